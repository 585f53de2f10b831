"""``load_clip(source)``: CLIP weights from local files into our :class:`~vop.backbone.clip.CLIP`.

Accepted sources (never a network download):

* an OpenAI release archive (``ViT-B-32.pt``, TorchScript): its tensors are read by
  :mod:`vop.backbone.formats.torchscript` without compiling or running any of the archive's code;
* a plain state dict in OpenAI / open_clip key layout: ``.pt`` / ``.pth`` / ``.bin``
  (:mod:`vop.backbone.formats.state_dict`, ``torch.load(weights_only=True)``) or ``.safetensors``
  (:mod:`vop.backbone.formats.safetensors`); a ``module.`` / ``model.`` prefix and a
  ``{"state_dict": ...}`` wrapper (training checkpoints) are accepted;
* a Hugging Face ``CLIPModel`` directory (``config.json`` + ``model.safetensors`` or
  ``pytorch_model.bin``); keys are renamed by :mod:`vop.backbone.formats.hf` (ours);
* a bundled model by name: ``vop/assets/<name>.safetensors`` carrying its config in the
  safetensors metadata (written by :func:`save_clip`).

This module picks the reader (by directory, suffix and the TorchScript archive's layout), decides
the architecture, checks the tensors against it and builds the model; the readers only read.

The architecture always comes from data — the ``config`` argument, the file's metadata, the
Hugging Face ``config.json``, or a file named after a known config (``ViT-B-32.pt``) — never
from tensor shapes. Missing / unexpected keys and shape mismatches are errors that list the keys
and name the config, so a wrong config is caught instead of silently loading garbage.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import torch

from vop.backbone.clip import CLIP, CONFIGS, CLIPConfig, get_config, state_shapes
from vop.backbone.formats.errors import CheckpointError
from vop.backbone.formats.hf import read_hf_dir
from vop.backbone.formats.safetensors import (
    CONFIG_METADATA_KEY,
    pack_token_rows,
    read_clip_safetensors,
    safetensors_metadata,
)
from vop.backbone.formats.state_dict import TORCH_SUFFIXES, read_state_dict, unwrap
from vop.backbone.formats.torchscript import is_torchscript, read_torchscript_state

# --------------------------------------------------------------------------- public API


def load_clip(source: str | Path, config: str | CLIPConfig | dict | None = None,
              default_config: str | CLIPConfig | dict | None = None) -> CLIP:
    """Load CLIP weights from a local file, a Hugging Face directory, or a bundled name.

    ``config`` (a name such as ``"ViT-B-32"``, a :class:`CLIPConfig` or its dict) overrides
    the architecture the source declares; ``default_config`` is used only when it declares none
    (a recorded backbone's architecture, for a bare state dict). The returned model is frozen, in
    eval mode, with ``source`` (the absolute path, or the bundled name) and ``source_format``
    (one of ``vop.backbone.reference.FORMATS``) set.
    """
    state, declared, path, (kind, where) = _read_source(source)
    cfg = _as_config(config) if config is not None else declared
    if cfg is None and default_config is not None:
        cfg = _as_config(default_config)
    if cfg is None:
        raise CheckpointError(
            f"{path}: cannot tell the architecture; pass config=NAME (known: {', '.join(sorted(CONFIGS))}) "
            f"or name the file after a config, e.g. ViT-B-32.pt"
        )
    model = build_from_state_dict(state, cfg, origin=str(path))
    model.source, model.source_format = where, kind
    return model


def _read_source(source: str | Path) -> tuple[dict[str, torch.Tensor], CLIPConfig | None, Path, tuple[str, str]]:
    """-> (OpenAI-layout state dict, declared config or None, file read, (format, where))."""
    path = Path(source).expanduser()
    if path.is_dir():
        state, cfg = read_hf_dir(path)
        return state, cfg, path, ("hf", str(path.resolve()))
    if path.is_file():
        state, cfg, kind = _read_file(path)
        return state, cfg, path, (kind, str(path.resolve()))
    bundled = bundled_models()
    if str(source) not in bundled:
        raise FileNotFoundError(
            f"CLIP source {str(source)!r} is neither a file, a directory nor a bundled model "
            f"(bundled: {', '.join(sorted(bundled)) or 'none'})"
        )
    state, cfg, _ = _read_file(bundled[str(source)])
    return state, cfg, bundled[str(source)], ("bundled", str(source))


def save_clip(model: CLIP, path: str | Path, keep_tokens=None) -> Path:
    """Write ``model``'s weights and config to one ``.safetensors`` file that ``load_clip`` reads.

    ``keep_tokens`` (token ids) stores only those rows of the 49,408-row token embedding, the
    others load as zero rows: a model trained on a small vocabulary ships in a fraction of the bytes.

    Put such a file at ``vop/assets/<name>.safetensors`` to make it loadable by ``<name>``.
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: save_clip writes safetensors; use a .safetensors file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    metadata = {CONFIG_METADATA_KEY: json.dumps(model.cfg.to_dict()), "format": "pt"}
    if keep_tokens is not None:  # store only these rows of the token embedding; the others load as zero
        metadata.update(pack_token_rows(state, keep_tokens))
    save_file(state, str(path), metadata=metadata)
    return path


def bundled_models() -> dict[str, Path]:
    """Bundled CLIP weights: ``name -> path`` for each ``vop/assets/*.safetensors`` with a config."""
    assets = assets_dir()
    if not assets.is_dir():
        return {}
    return {
        path.stem: path
        for path in sorted(assets.glob("*.safetensors"))
        if CONFIG_METADATA_KEY in safetensors_metadata(path)
    }


def assets_dir() -> Path:
    """The package's ``assets`` folder (bundled weights live there)."""
    return Path(str(resources.files("vop"))) / "assets"


def build_from_state_dict(
    state: dict[str, torch.Tensor], cfg: CLIPConfig, origin: str = "state dict"
) -> CLIP:
    """A frozen CLIP of architecture ``cfg`` holding exactly the tensors of ``state`` (OpenAI layout).

    The config is validated and the tensors' names and shapes compared with it *before* the model
    is built, so a small file cannot make vop allocate a model its tensors do not fill."""
    try:
        cfg.validate()
    except ValueError as err:
        raise CheckpointError(f"{origin}: CLIP config refused: {err}") from None
    check_state_dict(state_shapes(cfg), state, cfg, origin)
    check_storage(state, origin)
    check_finite(state, origin)
    model = CLIP(cfg)
    model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()}, strict=True)
    model._sha256 = None  # the cached hash described the random init
    return model.freeze()


def check_state_dict(expected: dict[str, tuple[int, ...]], state: dict[str, torch.Tensor], cfg: CLIPConfig,
                     origin: str) -> None:
    """Raise :class:`CheckpointError` listing missing / unexpected keys and shape mismatches
    (``expected``: name -> shape, :func:`vop.backbone.clip.state_shapes`)."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(
        f"{k}: file {tuple(state[k].shape)} vs model {expected[k]}"
        for k in set(state) & set(expected)
        if tuple(state[k].shape) != expected[k]
    )
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {_short_list(missing)}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {_short_list(unexpected)}")
    if wrong:
        problems.append(f"shape mismatches ({len(wrong)}): {_short_list(wrong)}")
    if problems:
        raise CheckpointError(
            f"{origin} does not fit CLIP config {cfg.name!r} ({_describe(cfg)}): " + "; ".join(problems)
        )


STORAGE_FACTOR = 8  # how many times the bytes a file's tensors hold may be needed in float32 (fp16 -> fp32: 2)


def check_storage(state: dict[str, torch.Tensor], origin: str, error=None) -> None:
    """Refuse tensors whose numbers are not in the file: a pickle may rebuild a tensor as a
    stride-0 view (``expand``) of one stored number, so a 100 KB ``ViT-B-32.pt`` would make vop
    allocate the whole model. The model's float32 bytes must be at most ``STORAGE_FACTOR`` times
    the bytes of the distinct storages behind the tensors (plus 1 MiB for tiny models)."""
    need = sum(4 * t.numel() for t in state.values())
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in state.values()}
    held = sum(storages.values())
    if need > STORAGE_FACTOR * held + 2**20:
        raise (error or CheckpointError)(
            f"{origin}: its tensors hold {held:,} bytes but stand for {need:,} bytes in float32 (views that "
            f"repeat stored numbers, e.g. a stride-0 expand); refused")


def check_finite(state: dict[str, torch.Tensor], origin: str, error=None) -> None:
    """Refuse weights holding NaN or Inf: they would encode every video as a NaN vector."""
    error = error or CheckpointError
    for name, tensor in state.items():
        if tensor.is_floating_point() or tensor.is_complex():
            bad = tensor.numel() - int(torch.isfinite(tensor).sum())
            if bad:
                raise error(f"{origin}: tensor {name} holds {bad} non-finite values (NaN/Inf); refused")


# --------------------------------------------------------------------------- files


def _read_file(path: Path) -> tuple[dict[str, torch.Tensor], CLIPConfig | None, str]:
    """A single weights file -> (OpenAI-layout state dict, declared config or None, format)."""
    if path.suffix == ".safetensors":
        state, cfg = read_clip_safetensors(path, config_from_filename(path))
        return state, cfg, "safetensors"
    if path.suffix in TORCH_SUFFIXES:
        if is_torchscript(path):
            # Tensors only, through a restricted unpickler: the archive's code is never compiled or run.
            state = unwrap(read_torchscript_state(path), path)
            return state, config_from_filename(path), "openai-torchscript"
        return read_state_dict(path), config_from_filename(path), "state-dict"
    raise CheckpointError(
        f"{path}: unknown checkpoint format {path.suffix!r}; expected .safetensors, "
        f"{', '.join(TORCH_SUFFIXES)} or a Hugging Face directory"
    )


def config_from_filename(path: Path) -> CLIPConfig | None:
    """A known config named by the file: ``ViT-B-32.pt``, ``ViT-B-32-openai.bin`` (longest name wins)."""
    stem = path.name.split(".")[0] if path.suffix else path.name
    matches = [n for n in CONFIGS if stem == n or stem.startswith((n + "-", n + "_"))]
    return CONFIGS[max(matches, key=len)] if matches else None


def _as_config(config: str | CLIPConfig | dict) -> CLIPConfig:
    if isinstance(config, CLIPConfig):
        return config
    if isinstance(config, dict):
        return CLIPConfig.from_dict(config)
    return get_config(config)


# --------------------------------------------------------------------------- helpers


def _short_list(items: list[str], limit: int = 12) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def _describe(cfg: CLIPConfig) -> str:
    v, t = cfg.vision, cfg.text
    return (
        f"vision width {v.width} x {v.layers} layers, patch {v.patch_size}, {v.image_size} px; "
        f"text width {t.width} x {t.layers} layers, context {t.context_length}; embed {cfg.embed_dim}"
    )


__all__ = [
    "CONFIG_METADATA_KEY",
    "CheckpointError",
    "build_from_state_dict",
    "bundled_models",
    "config_from_filename",
    "load_clip",
    "save_clip",
]
