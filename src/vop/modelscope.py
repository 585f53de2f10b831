"""Import the VoP weights the authors released on ModelScope as normal vop adapters.

The release (``damo/cv_vit-b32_retrieval_vop``) is a folder with ``VoP_msrvtt9k.pth`` (basic
VoP), ``ViT-B-32.pt`` (OpenAI CLIP) and ``configuration.json``; the "series" baselines
(``..._vop_bias``, ``_partial``, ``_proj``) hold ``VoPSE_msrvtt9k.pth`` instead. This module
reads them (``torch.load(weights_only=True)``: tensors only, never code) and builds the matching
vop method on the given backbone, so ``vop eval / index / search / serve`` use them like any
adapter. What the port's code (``modelscope/models/cv/vop_retrieval``, PyPI ``modelscope``)
does and what we map it to:

* basic VoP: ``visual_prompt_learner.visual_prompts`` ``[K, 1, n_v, 768]`` -> the ``visual``
  component (shared deep prompts in all K layers, before ``ln_pre`` in layer 1: the port's
  placement is vop's); ``text_prompt_learner.text_prompts`` ``[K, n_p + n_s, 512]`` -> the
  ``text`` component with ``text_placement: modelscope`` (the port's own layout, see
  ``vop.prompts.text``). The file also holds the whole CLIP (``clip.*``, plus the same tensors
  again under ``image_encoder.*`` / ``text_encoder.*``); the port uses those, so they must equal
  the backbone's, which is checked.
* series: the file holds the whole CLIP (``clip.*``), tuned in part. The tensors that differ
  from the backbone are mapped to the first vop baseline whose trained set holds them all (the
  folder's own variant first, then ``proj``, ``bias``, ``partial``, ``partial`` with
  ``include_heads``; or the ``method`` asked for, ``full`` included); a tensor outside the chosen
  set cannot be mapped and is named in the error. ``logit_scale`` never maps
  (every vop method keeps CLIP's scale; it does not change embeddings) and is reported.

Frame pooling is the port's ``avg`` (mean of L2-normalised frame embeddings), which is vop's.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vop.adapter import META_FILE, AdapterError, save_adapter
from vop.backbone.clip import CLIP
from vop.model import VideoTextModel, build_model

VOP_FILE = "VoP_msrvtt9k.pth"
SERIES_FILE = "VoPSE_msrvtt9k.pth"
CONFIG_FILE = "configuration.json"
BACKBONE_FILE = "ViT-B-32.pt"
VISUAL_KEY = "visual_prompt_learner.visual_prompts"
TEXT_KEY = "text_prompt_learner.text_prompts"
# The port's encoders hold CLIP's modules again under these names (same tensors in the file).
ALIASES = {"image_encoder.": "clip.visual.", "text_encoder.": "clip."}
SERIES_METHODS = ("proj", "bias", "partial", "partial+heads")  # tried in this order (smallest first)
NOT_MAPPED = ("logit_scale",)  # never trained by a vop method; does not change embeddings
VOP_HYPERPARAMS = ("vp_token_num", "tp_prefix_token_num", "tp_suffix_token_num", "num_frames", "input_res",
                   "pooling_type")
SERIES_HYPERPARAMS = ("num_frames", "input_res", "pooling_type")


class ModelScopeError(AdapterError):
    """A ModelScope checkpoint that cannot be imported; the message names the file and the reason."""


@dataclass
class ImportReport:
    kind: str  # "vop" (basic VoP) or "series"
    method: str
    checkpoint: str
    checkpoint_sha256: str
    hyperparam: dict
    mapped: dict[str, str] = field(default_factory=dict)  # checkpoint key -> vop tensor name
    unmapped: dict[str, str] = field(default_factory=dict)  # checkpoint key -> why
    checked: int = 0  # CLIP tensors verified equal to the backbone's

    def to_json(self) -> dict:
        from vop import __version__

        return {"format": "modelscope", "vop_version": __version__, "kind": self.kind, "checkpoint": self.checkpoint,
                "checkpoint_sha256": self.checkpoint_sha256, "hyperparam": self.hyperparam,
                "mapped": len(self.mapped), "unmapped": self.unmapped,
                "clip_tensors_checked_equal_to_backbone": self.checked}


# --------------------------------------------------------------------------- files


def find_files(source: str | os.PathLike) -> tuple[Path, Path]:
    """``MODEL_DIR`` (or the ``.pth`` itself) -> (checkpoint, configuration.json)."""
    src = Path(source).expanduser()
    if src.is_file():
        return src, src.parent / CONFIG_FILE
    if not src.is_dir():
        raise ModelScopeError(f"{src}: not found (give the ModelScope model folder or its .pth file)")
    for name in (VOP_FILE, SERIES_FILE):
        if (src / name).exists() and not (src / name).is_file():
            raise ModelScopeError(f"{src / name}: a directory, not a checkpoint file")
    found = [src / n for n in (VOP_FILE, SERIES_FILE) if (src / n).is_file()]
    if not found:
        found = sorted(p for p in src.glob("*.pth") if p.name != BACKBONE_FILE and p.is_file())
    if len(found) != 1:
        what = "no" if not found else f"{len(found)} ({', '.join(p.name for p in found)})"
        raise ModelScopeError(f"{src}: {what} checkpoint files; expected {VOP_FILE} or {SERIES_FILE}")
    return found[0], src / CONFIG_FILE


def read_hyperparam(path: Path, needed: tuple[str, ...]) -> dict:
    from vop.limits import MAX_FRAMES, MAX_IMAGE_SIZE, MAX_PROMPT_TOKENS, check_int, read_json_object

    if not path.is_file():
        raise ModelScopeError(f"{path}: not found (the model folder's configuration.json gives the hyperparameters)")
    hp = read_json_object(path, ModelScopeError).get("hyperparam")  # bad JSON, absurd nesting: one line
    if not isinstance(hp, dict):
        raise ModelScopeError(f"{path}: no 'hyperparam' object")
    missing = [k for k in needed if k not in hp]
    if missing:
        raise ModelScopeError(f"{path}: hyperparam lacks {', '.join(missing)}")
    ranges = {"num_frames": (1, MAX_FRAMES), "input_res": (1, MAX_IMAGE_SIZE)}  # token counts: prompt lengths
    for k in needed:
        if k != "pooling_type":
            check_int(hp[k], *ranges.get(k, (0, MAX_PROMPT_TOKENS)), f"hyperparam {k}",
                      lambda msg: ModelScopeError(f"{path}: {msg}"))
    if hp["pooling_type"] != "avg":
        raise ModelScopeError(f"{path}: pooling_type {hp['pooling_type']!r}; the port (and vop) pool frames by 'avg'")
    return {k: hp[k] for k in needed}


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """The checkpoint's tensors by name (``module.`` stripped), read without running any code,
    and the file's sha256 (the file is read once)."""
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch warns before refusing TorchScript
            obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)
        after = msg.split("WeightsUnpickler error:", 1)[-1].strip().splitlines()
        why = after[0].strip() if after else msg.splitlines()[0]
        m = re.search(r"Unsupported global: GLOBAL (\S+)", msg)
        if m or "Trying to call reduce" in msg or "Unsupported class" in msg:
            raise ModelScopeError(f"{path}: refused: the pickle needs code to load ("
                                  + (f"it needs {m.group(1)}" if m else why)
                                  + "); vop reads tensors only (weights_only=True)") from None
        raise ModelScopeError(f"{path}: not a readable torch checkpoint ({why})") from None
    except RuntimeError as e:
        if "TorchScript" in str(e):
            raise ModelScopeError(f"{path}: a TorchScript archive (code), not a ModelScope state dict") from None
        raise ModelScopeError(f"{path}: not a readable torch checkpoint ({str(e).splitlines()[0]})") from None
    except Exception as e:  # noqa: BLE001 - truncated or foreign files fail in many ways inside torch.load
        raise ModelScopeError(f"{path}: not a readable torch checkpoint ({type(e).__name__}: {e})") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ModelScopeError(f"{path}: expected a dict with a 'state_dict', found {type(obj).__name__}")
    state = {}
    for name, t in obj.items():
        if not isinstance(t, torch.Tensor):
            raise ModelScopeError(f"{path}: entry {name!r} is a {type(t).__name__}, not a tensor")
        state[name.removeprefix("module.")] = t
    return state, sha


# --------------------------------------------------------------------------- mapping


def _clip_state(clip: CLIP) -> dict[str, torch.Tensor]:
    return dict(clip.state_dict())


def _check_clip_copy(state: dict[str, torch.Tensor], clip: CLIP, path: Path, report: ImportReport) -> None:
    """The basic checkpoint's own CLIP (``clip.*`` and its aliases) must be the backbone."""
    ref = _clip_state(clip)
    copies: dict[str, str] = {}  # checkpoint key -> backbone tensor name
    for k in state:
        if k in (VISUAL_KEY, TEXT_KEY):
            continue
        name = k.removeprefix("clip.") if k.startswith("clip.") else None
        for prefix, target in ALIASES.items():
            if k.startswith(prefix):
                name = (target + k[len(prefix):]).removeprefix("clip.")
        if name not in ref:
            raise ModelScopeError(f"{path}: unexpected key module.{k}")
        copies[k] = name
    if not copies:
        return  # a prompts-only file: nothing to check
    missing = sorted(set(ref) - {k.removeprefix("clip.") for k in copies if k.startswith("clip.")})
    if missing:
        raise ModelScopeError(f"{path}: missing key module.clip.{missing[0]}"
                              + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    for k, name in copies.items():
        v, want = state[k], ref[name]
        if tuple(v.shape) != tuple(want.shape):
            raise ModelScopeError(f"{path}: module.{k} has shape {tuple(v.shape)}, the backbone's {name} "
                                  f"has {tuple(want.shape)}")
        same = v.is_floating_point() and torch.equal(v.to(torch.float32), want)
        if name in NOT_MAPPED:
            if not same:
                report.unmapped[f"module.{k}"] = "differs from the backbone; vop keeps CLIP's logit scale"
            continue
        if not same:
            raise ModelScopeError(f"{path}: module.{k} differs from the backbone's {name}: the prompts were "
                                  f"trained on other CLIP weights than {getattr(clip, 'source', 'the backbone')}")
        report.checked += 1


def _prompt(state: dict, key: str, shape: tuple[int, ...], path: Path, what: str) -> torch.Tensor:
    if key not in state:
        raise ModelScopeError(f"{path}: missing key module.{key} ({what})")
    t = state[key]
    if tuple(t.shape) != shape:
        raise ModelScopeError(f"{path}: module.{key} has shape {tuple(t.shape)}, expected {shape} ({what})")
    if not t.is_floating_point():
        raise ModelScopeError(f"{path}: module.{key} has dtype {t.dtype}, expected floating point")
    bad = t.numel() - int(torch.isfinite(t).sum())
    if bad:
        raise ModelScopeError(f"{path}: module.{key} holds {bad} non-finite values (NaN/Inf); refused")
    return t.to(torch.float32)


def convert_vop(state: dict, hp: dict, clip: CLIP, path: Path, report: ImportReport) -> VideoTextModel:
    v, t = clip.cfg.vision, clip.cfg.text
    n_v, pre, suf = hp["vp_token_num"], hp["tp_prefix_token_num"], hp["tp_suffix_token_num"]
    if pre + suf > t.context_length - 2:
        raise ModelScopeError(f"{path}: {pre} + {suf} text prompts leave no room for a caption in "
                              f"{t.context_length} positions")
    vis = _prompt(state, VISUAL_KEY, (v.layers, 1, n_v, v.width), path,
                  f"[vision layers, 1, vp_token_num, width] of {clip.cfg.name}")
    txt = _prompt(state, TEXT_KEY, (t.layers, pre + suf, t.width), path,
                  f"[text layers, tp_prefix_token_num + tp_suffix_token_num, width] of {clip.cfg.name}")
    _check_clip_copy(state, clip, path, report)
    components = [{"type": "text", "text_length": pre + suf, "text_placement": "modelscope",
                   "text_prefix_length": pre},
                  {"type": "visual", "visual_length": n_v, "shallow_layers": None}]
    model = build_model(clip, "vop", hp["num_frames"], overrides={"components": components})
    with torch.no_grad():
        model.prompts["text"].tokens.copy_(txt)
        model.prompts["visual"].tokens.copy_(vis[:, 0])
    report.mapped = {f"module.{TEXT_KEY}": "prompts.text.tokens",
                     f"module.{VISUAL_KEY}": "prompts.visual.tokens (squeezed [K, n, D])"}
    return model


def trained_set(clip: CLIP, method: str) -> set[str]:
    """Names (OpenAI layout) of the backbone tensors that vop's baseline ``method`` trains."""
    from vop.prompts.base import COMPONENTS

    if method == "full":
        return {n for n, _ in clip.named_parameters()} - set(NOT_MAPPED)
    name, _, heads = method.partition("+")
    chosen = {id(p) for p in COMPONENTS[name].from_config({"include_heads": bool(heads)}, clip.cfg, 1).select(clip)}
    return {n for n, p in clip.named_parameters() if id(p) in chosen}


def _method_args(method: str) -> tuple[str, dict | None]:
    if method == "partial+heads":
        return "partial", {"include_heads": True}
    if method == "partial":
        return "partial", {"include_heads": False}
    return method, None


def _short(names: list[str], limit: int = 8) -> str:
    return ", ".join(names[:limit]) + (f" ... ({len(names)} in all)" if len(names) > limit else "")


def convert_series(state: dict, hp: dict, clip: CLIP, path: Path, report: ImportReport,
                   method: str | None, hint: str | None) -> VideoTextModel:
    ref = _clip_state(clip)
    stray = sorted(k for k in state if not k.startswith("clip."))
    if stray:
        raise ModelScopeError(f"{path}: unexpected key module.{stray[0]} (a series checkpoint holds clip.* only)")
    tuned = {k.removeprefix("clip."): v for k, v in state.items()}
    missing, extra = sorted(set(ref) - set(tuned)), sorted(set(tuned) - set(ref))
    if missing:
        raise ModelScopeError(f"{path}: missing key module.clip.{missing[0]}"
                              + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    if extra:
        raise ModelScopeError(f"{path}: unexpected key module.clip.{extra[0]}")
    for k, v in tuned.items():
        if tuple(v.shape) != tuple(ref[k].shape) or not v.is_floating_point():
            raise ModelScopeError(f"{path}: module.clip.{k} has shape {tuple(v.shape)} ({v.dtype}), the backbone's "
                                  f"has {tuple(ref[k].shape)}")
    from vop.backbone.loading import check_finite

    check_finite({f"module.clip.{k}": v for k, v in tuned.items()}, str(path), error=ModelScopeError)
    tuned = {k: v.to(torch.float32) for k, v in tuned.items()}
    changed = sorted(k for k in ref if not torch.equal(tuned[k], ref[k]))
    for k in NOT_MAPPED:
        if k in changed:
            report.unmapped[f"module.clip.{k}"] = "differs from the backbone; vop keeps CLIP's logit scale"
    changed = [k for k in changed if k not in NOT_MAPPED]
    report.checked = len(ref) - len(changed) - sum(k in NOT_MAPPED for k in ref)
    if method is not None:
        outside = sorted(set(changed) - trained_set(clip, method))
        if outside:
            raise ModelScopeError(
                f"{path}: {len(outside)} tuned tensors are not trained by vop's {method!r} and cannot be mapped: "
                f"{_short(['clip.' + k for k in outside])}"
                + ("" if method == "full" else "; pass --method full to import the whole model"))
        chosen = method
    elif not changed:
        chosen = "zeroshot"
    else:  # the folder's own variant first (..._vop_partial: partial, then partial+heads), then the rest
        order = sorted(SERIES_METHODS, key=lambda m: m.partition("+")[0] != hint)
        fits = [m for m in order if set(changed) <= trained_set(clip, m)]
        if not fits:
            best = min(SERIES_METHODS, key=lambda m: len(set(changed) - trained_set(clip, m)))
            outside = sorted(set(changed) - trained_set(clip, best))
            raise ModelScopeError(
                f"{path}: no vop baseline trains all {len(changed)} tuned tensors; the closest, {best!r}, "
                f"cannot map {len(outside)}: {_short(['clip.' + k for k in outside])}; "
                "pass --method full to import the whole model")
        chosen = fits[0]
    name, overrides = _method_args(chosen) if chosen != "zeroshot" else ("zeroshot", None)
    model = build_model(clip, name, hp["num_frames"], overrides=overrides)
    with torch.no_grad():
        for n, p in model.trainable_named_parameters():
            key = n.removeprefix("clip.")
            p.copy_(tuned[key])
            report.mapped[f"module.clip.{key}"] = n
    report.method = chosen
    return model


def _hint(folder: Path) -> str | None:
    """The series variant named by a ModelScope folder (``..._vop_bias``), as its pipeline reads it."""
    for m in ("bias", "partial", "proj"):
        if f"vop_{m}" in folder.name:
            return m
    return None


def convert_modelscope(source: str | os.PathLike, clip: CLIP, method: str | None = None
                       ) -> tuple[VideoTextModel, ImportReport]:
    """Read a ModelScope VoP folder (or ``.pth``) and build the vop model on ``clip`` (in memory)."""
    ckpt, cfg_path = find_files(source)
    state, sha = load_checkpoint(ckpt)
    kind = "vop" if (VISUAL_KEY in state or TEXT_KEY in state) else "series"
    if method is not None and kind == "vop":
        raise ModelScopeError(f"{ckpt}: --method applies to series checkpoints; this one is basic VoP")
    if method is not None and method not in (*SERIES_METHODS, "full"):
        raise ModelScopeError(f"unknown method {method!r}; series checkpoints map to "
                              f"{', '.join((*SERIES_METHODS, 'full'))}")
    hp = read_hyperparam(cfg_path, VOP_HYPERPARAMS if kind == "vop" else SERIES_HYPERPARAMS)
    if hp["input_res"] != clip.cfg.vision.image_size:
        raise ModelScopeError(f"{cfg_path}: input_res {hp['input_res']} but the backbone {clip.cfg.name} takes "
                              f"{clip.cfg.vision.image_size} px images")
    report = ImportReport(kind, "vop", ckpt.name, sha, hp)
    if kind == "vop":
        model = convert_vop(state, hp, clip, ckpt, report)
    else:
        model = convert_series(state, hp, clip, ckpt, report, method, _hint(ckpt.parent))
    return model, report


def import_modelscope(source: str | os.PathLike, out: str | os.PathLike, backbone: str | os.PathLike | None = None,
                      method: str | None = None, force: bool = False) -> ImportReport:
    """Convert and save as a vop adapter in ``out``; the backbone defaults to ``MODEL_DIR/ViT-B-32.pt``."""
    from vop.backbone.reference import resolve_backbone

    ckpt, _ = find_files(source)
    if backbone is None:
        backbone = ckpt.parent / BACKBONE_FILE
        if not Path(backbone).is_file():
            raise ModelScopeError(f"{backbone}: not found; pass --backbone ViT-B-32.pt (OpenAI CLIP weights)")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ModelScopeError(f"{out}: exists and is not a folder")
    if (out / META_FILE).exists() and not force:
        raise ModelScopeError(f"{out}: already holds an adapter; pass --force to overwrite it")
    clip = resolve_backbone(None, backbone)
    model, report = convert_modelscope(source, clip, method)
    save_adapter(model, out, extra={"imported_from": report.to_json()})
    return report
