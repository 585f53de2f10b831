"""``load_clip(source)``: CLIP weights from local files into our :class:`~vop.backbone.clip.CLIP`.

Accepted sources (never a network download):

* an OpenAI release archive (``ViT-B-32.pt``, TorchScript): its tensors are read by
  :mod:`vop.backbone.torchscript` without compiling or running any of the archive's code;
* a plain state dict in OpenAI / open_clip key layout: ``.pt`` / ``.pth`` / ``.bin`` (read with
  ``torch.load(weights_only=True)``) or ``.safetensors``; a ``module.`` / ``model.`` prefix and a
  ``{"state_dict": ...}`` wrapper (training checkpoints) are accepted;
* a Hugging Face ``CLIPModel`` directory (``config.json`` + ``model.safetensors`` or
  ``pytorch_model.bin``); keys are renamed by :func:`hf_to_openai` (ours);
* a bundled model by name: ``vop/assets/<name>.safetensors`` carrying its config in the
  safetensors metadata (written by :func:`save_clip`).

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

from vop.backbone.clip import CLIP, CONFIGS, CLIPConfig, TextCfg, VisionCfg, get_config, state_shapes
from vop.backbone.torchscript import is_torchscript, read_torchscript_state

CONFIG_METADATA_KEY = "vop_clip_config"  # safetensors metadata: JSON of CLIPConfig.to_dict()
SPARSE_ROWS_KEY = "vop_sparse_rows"  # safetensors metadata: a table stored as .rows + .values
_TOKEN_TABLE = "token_embedding.weight"
TORCH_SUFFIXES = (".pt", ".pth", ".bin")
# Scalars stored next to the weights in OpenAI's archives; they are not parameters.
NON_PARAMETER_KEYS = ("input_resolution", "context_length", "vocab_size")
# Wrappers used by training checkpoints (open_clip saves {"epoch", "state_dict", ...}).
CONTAINER_KEYS = ("state_dict", "model", "module")
WRAPPER_PREFIXES = ("module.", "model.")


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded: the message names the file and the reason."""


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
        state, cfg, kind = _read_hf_dir(path)
        return state, cfg, path, (kind, str(path.resolve()))
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
        rows = torch.tensor(sorted(set(keep_tokens)), dtype=torch.int64)
        table = state.pop(_TOKEN_TABLE)
        state[_TOKEN_TABLE + ".rows"], state[_TOKEN_TABLE + ".values"] = rows, table[rows].contiguous()
        metadata[SPARSE_ROWS_KEY] = _TOKEN_TABLE
    save_file(state, str(path), metadata=metadata)
    return path


def _expand_sparse_rows(state: dict[str, torch.Tensor], meta: dict[str, str], cfg: CLIPConfig | None,
                        path: Path) -> dict[str, torch.Tensor]:
    """Undo ``save_clip(keep_tokens=...)``: rows not stored become zero rows of the full table."""
    name = meta.get(SPARSE_ROWS_KEY)
    if name is None:
        return state
    rows, values = state.pop(name + ".rows", None), state.pop(name + ".values", None)
    if rows is None or values is None or cfg is None or rows.ndim != 1 or values.shape[0] != rows.shape[0]:
        raise CheckpointError(f"{path}: sparse table {name!r} is incomplete (needs .rows, .values and a config)")
    if name != _TOKEN_TABLE or values.ndim != 2 or values.shape[1] != cfg.text.width or rows.is_floating_point():
        raise CheckpointError(f"{path}: sparse table {name!r}: values of shape {tuple(values.shape)} do not fit "
                              f"the token embedding [vocab, {cfg.text.width}] of the config")
    vocab = cfg.text.vocab_size
    if rows.numel() and not (0 <= int(rows.min()) and int(rows.max()) < vocab):
        raise CheckpointError(f"{path}: sparse table {name!r} names rows outside 0..{vocab - 1}")
    table = torch.zeros(vocab, values.shape[1], dtype=values.dtype)
    table[rows] = values
    state[name] = table
    return state


def bundled_models() -> dict[str, Path]:
    """Bundled CLIP weights: ``name -> path`` for each ``vop/assets/*.safetensors`` with a config."""
    assets = assets_dir()
    if not assets.is_dir():
        return {}
    return {
        path.stem: path
        for path in sorted(assets.glob("*.safetensors"))
        if CONFIG_METADATA_KEY in _safetensors_metadata(path)
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


def read_safetensors(path: Path, error=None) -> dict[str, torch.Tensor]:
    """``safetensors.torch.load_file`` with a one-line error for a file that is not safetensors."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise (error or CheckpointError)(
            f"{path}: not a readable safetensors file ({_first_line(err)})"
        ) from None


def torch_load_weights(path: Path, error=None):
    """``torch.load(weights_only=True)`` whose refusals are one line (never suggesting to turn it off)."""
    import pickle
    import re

    error = error or CheckpointError
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        if found is None:  # garbage, not a refused object
            raise error(f"{path}: not a readable torch checkpoint (corrupt pickle data)") from None
        raise error(
            f"{path}: holds a Python object ({found.group(1)}), which weights-only loading refuses; vop "
            f"never unpickles objects: save a plain state dict of tensors, or convert it to .safetensors"
        ) from None
    except (RuntimeError, EOFError, ValueError, OSError, KeyError, IndexError, TypeError, AttributeError,
            MemoryError, OverflowError) as err:
        raise error(f"{path}: not a readable torch checkpoint ({_first_line(err)})") from None


def _first_line(err: BaseException, limit: int = 200) -> str:
    text = str(err).strip().splitlines()
    line = text[0] if text else type(err).__name__
    return line[:limit] + ("..." if len(line) > limit else "")


def _read_file(path: Path) -> tuple[dict[str, torch.Tensor], CLIPConfig | None, str]:
    """A single weights file -> (OpenAI-layout state dict, declared config or None, format)."""
    if path.suffix == ".safetensors":
        state = read_safetensors(path)
        meta = _safetensors_metadata(path)
        cfg = _config_from_metadata(meta, path) or config_from_filename(path)
        return _unwrap(_expand_sparse_rows(state, meta, cfg, path), path), cfg, "safetensors"
    if path.suffix in TORCH_SUFFIXES:
        if _is_torchscript(path):
            return _read_torchscript(path), config_from_filename(path), "openai-torchscript"
        obj = torch_load_weights(path)
        return _unwrap(obj, path), config_from_filename(path), "state-dict"
    raise CheckpointError(
        f"{path}: unknown checkpoint format {path.suffix!r}; expected .safetensors, "
        f"{', '.join(TORCH_SUFFIXES)} or a Hugging Face directory"
    )


def _is_torchscript(path: Path) -> bool:
    return is_torchscript(path)


def _read_torchscript(path: Path) -> dict[str, torch.Tensor]:
    # Tensors only, through a restricted unpickler: the archive's code is never compiled or run.
    return _unwrap(read_torchscript_state(path), path)


def _unwrap(obj, path: Path) -> dict[str, torch.Tensor]:
    """Strip training wrappers (container dicts, ``module.``/``model.`` prefixes) and non-parameters."""
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a state dict, found {type(obj).__name__}")
    for key in CONTAINER_KEYS:
        if isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    state = {}
    for name, tensor in obj.items():
        if not isinstance(tensor, torch.Tensor):
            raise CheckpointError(f"{path}: entry {name!r} is a {type(tensor).__name__}, not a tensor")
        for prefix in WRAPPER_PREFIXES:
            if name.startswith(prefix):
                name = name[len(prefix) :]
                break
        if name not in NON_PARAMETER_KEYS:
            state[name] = tensor
    if any(k.startswith(("text_model.", "vision_model.")) for k in state):
        raise CheckpointError(
            f"{path}: this is a Hugging Face CLIPModel state dict; load the directory that holds "
            f"it together with its config.json"
        )
    return state


def _safetensors_metadata(path: Path) -> dict[str, str]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path}: not a readable safetensors file ({_first_line(err)})") from None


def _config_from_metadata(meta: dict[str, str], path: Path) -> CLIPConfig | None:
    if CONFIG_METADATA_KEY not in meta:
        return None
    try:
        return CLIPConfig.from_dict(json.loads(meta[CONFIG_METADATA_KEY]))
    except (ValueError, KeyError, TypeError, RecursionError) as e:
        raise CheckpointError(
            f"{path}: metadata key {CONFIG_METADATA_KEY!r} is not a valid CLIP config: {str(e)[:300]}"
        ) from None


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


# --------------------------------------------------------------------------- Hugging Face

# Defaults of transformers' CLIPTextConfig / CLIPVisionConfig for keys a config.json may omit.
HF_TEXT_DEFAULTS = {
    "hidden_size": 512,
    "intermediate_size": 2048,
    "num_hidden_layers": 12,
    "num_attention_heads": 8,
    "max_position_embeddings": 77,
    "vocab_size": 49408,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
}
HF_VISION_DEFAULTS = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "image_size": 224,
    "patch_size": 32,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
}
HF_ACTIVATIONS = {"quick_gelu": True, "gelu": False}  # act name -> CLIPConfig.quick_gelu

# HF module names -> ours, applied to the part of a key after the encoder prefix.
HF_BLOCK_RENAMES = {
    "self_attn.out_proj.": "attn.out_proj.",
    "layer_norm1.": "ln_1.",
    "layer_norm2.": "ln_2.",
    "mlp.fc1.": "mlp.c_fc.",
    "mlp.fc2.": "mlp.c_proj.",
}
HF_RENAMES = {
    "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
    "text_model.embeddings.position_embedding.weight": "positional_embedding",
    "text_model.final_layer_norm.weight": "ln_final.weight",
    "text_model.final_layer_norm.bias": "ln_final.bias",
    "vision_model.embeddings.class_embedding": "visual.class_embedding",
    "vision_model.embeddings.patch_embedding.weight": "visual.conv1.weight",
    "vision_model.embeddings.position_embedding.weight": "visual.positional_embedding",
    "vision_model.pre_layrnorm.weight": "visual.ln_pre.weight",  # sic: HF's spelling
    "vision_model.pre_layrnorm.bias": "visual.ln_pre.bias",
    "vision_model.post_layernorm.weight": "visual.ln_post.weight",
    "vision_model.post_layernorm.bias": "visual.ln_post.bias",
    "logit_scale": "logit_scale",
}
HF_TRANSPOSED = {"text_projection.weight": "text_projection", "visual_projection.weight": "visual.proj"}
HF_QKV = {"self_attn.q_proj": "q", "self_attn.k_proj": "k", "self_attn.v_proj": "v"}
HF_ENCODERS = {
    "text_model.encoder.layers.": "transformer.resblocks.",
    "vision_model.encoder.layers.": "visual.transformer.resblocks.",
}
HF_BUFFERS = ("text_model.embeddings.position_ids", "vision_model.embeddings.position_ids")


def _read_hf_dir(path: Path) -> tuple[dict[str, torch.Tensor], CLIPConfig, str]:
    config_file = path / "config.json"
    if not config_file.is_file():
        raise CheckpointError(
            f"{path}: a directory source must be a Hugging Face CLIPModel folder with config.json"
        )
    from vop.limits import read_json_object

    hf_config = read_json_object(config_file, CheckpointError)
    cfg = config_from_hf(hf_config, name=path.name, origin=str(config_file))
    return hf_to_openai(_read_hf_weights(path)), cfg, "hf"


def _shard_names(index: Path) -> list[str]:
    """The shard files ``model.safetensors.index.json`` names: plain file names in its folder."""
    from vop.limits import read_json_object

    weight_map = read_json_object(index, CheckpointError).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{index}: no 'weight_map' object (tensor name -> shard file)")
    shards = set(weight_map.values())
    for shard in shards:
        if not (isinstance(shard, str) and shard.endswith(".safetensors") and "/" not in shard
                and "\\" not in shard and shard not in (".", "..")):
            raise CheckpointError(f"{index}: weight_map names {str(shard)[:80]!r}; expected a .safetensors "
                                  f"file name in the same folder")
    return sorted(shards)


def _read_hf_weights(path: Path) -> dict[str, torch.Tensor]:
    if (path / "model.safetensors").is_file():
        return read_safetensors(path / "model.safetensors")
    index = path / "model.safetensors.index.json"
    if index.is_file():  # sharded checkpoint: one file per group of tensors
        return {k: v for shard in _shard_names(index) for k, v in read_safetensors(path / shard).items()}
    if (path / "pytorch_model.bin").is_file():
        return torch_load_weights(path / "pytorch_model.bin")
    raise CheckpointError(f"{path}: no model.safetensors, model.safetensors.index.json or pytorch_model.bin")


def config_from_hf(hf_config: dict, name: str, origin: str) -> CLIPConfig:
    """Our CLIPConfig from a Hugging Face ``CLIPModel`` config.json (dict).

    Named after the matching built-in config when the architecture is one (so a converted
    OpenAI ViT-B/32 is called ``ViT-B-32``), otherwise after the folder.
    """
    if hf_config.get("model_type") not in (None, "clip"):
        raise CheckpointError(f"{origin}: model_type {str(hf_config['model_type'])[:40]!r} is not 'clip'")
    for label in ("text_config", "vision_config"):
        if not isinstance(hf_config.get(label, {}), dict):
            raise CheckpointError(f"{origin}: {label} must be an object")
    text = {**HF_TEXT_DEFAULTS, **hf_config.get("text_config", {})}
    vision = {**HF_VISION_DEFAULTS, **hf_config.get("vision_config", {})}
    for label, sub in (("text_config", text), ("vision_config", vision)):
        for key, default in (HF_TEXT_DEFAULTS if label == "text_config" else HF_VISION_DEFAULTS).items():
            if type(sub[key]) is not type(default):  # JSON types: a width "768" or true is refused here
                raise CheckpointError(f"{origin}: {label}.{key} is {str(sub[key])[:40]!r}; expected a "
                                      f"{type(default).__name__}")
        if sub["intermediate_size"] != 4 * sub["hidden_size"]:
            raise CheckpointError(f"{origin}: {label}.intermediate_size must be 4 x hidden_size for CLIP")
        if sub["hidden_act"] not in HF_ACTIVATIONS:
            raise CheckpointError(
                f"{origin}: {label}.hidden_act {sub['hidden_act']!r} is not one of {list(HF_ACTIVATIONS)}"
            )
        if abs(sub["layer_norm_eps"] - 1e-5) > 1e-12:
            raise CheckpointError(
                f"{origin}: {label}.layer_norm_eps {sub['layer_norm_eps']} is not CLIP's 1e-5"
            )
    if text["hidden_act"] != vision["hidden_act"]:
        raise CheckpointError(f"{origin}: text and vision use different activations; CLIP uses one")
    cfg = CLIPConfig(
        name=name,
        embed_dim=hf_config.get("projection_dim", 512),
        vision=VisionCfg(
            vision["hidden_size"],
            vision["num_hidden_layers"],
            vision["num_attention_heads"],
            vision["patch_size"],
            vision["image_size"],
        ),
        text=TextCfg(
            text["hidden_size"],
            text["num_hidden_layers"],
            text["num_attention_heads"],
            text["max_position_embeddings"],
            text["vocab_size"],
        ),
        quick_gelu=HF_ACTIVATIONS[text["hidden_act"]],
    )
    try:  # sizes checked before anything is built
        cfg.validate()
    except ValueError as err:
        raise CheckpointError(f"{origin}: {_hf_names(str(err))}") from None
    for known in CONFIGS.values():
        if {**known.to_dict(), "name": name} == cfg.to_dict():
            return known
    return cfg


def _hf_names(message: str) -> str:
    """A :meth:`CLIPConfig.validate` message in config.json's own key names."""
    for ours, theirs in (("vision.", "vision_config."), ("text.", "text_config."), (".width", ".hidden_size"),
                         (".layers", ".num_hidden_layers"), (".heads", ".num_attention_heads"),
                         (".context_length", ".max_position_embeddings"), ("embed_dim", "projection_dim")):
        message = message.replace(ours, theirs)
    return message


def config_to_hf(cfg: CLIPConfig) -> dict:
    """The inverse of :func:`config_from_hf`: the ``text_config`` / ``vision_config`` /
    ``projection_dim`` entries of a Hugging Face CLIP config.json for ``cfg`` (a plain dict, no
    transformers import); ``transformers.CLIPConfig(**config_to_hf(cfg))`` builds the same model."""
    act = "quick_gelu" if cfg.quick_gelu else "gelu"
    v, t = cfg.vision, cfg.text
    return {
        "text_config": {
            "hidden_size": t.width,
            "intermediate_size": 4 * t.width,
            "num_hidden_layers": t.layers,
            "num_attention_heads": t.heads,
            "max_position_embeddings": t.context_length,
            "vocab_size": t.vocab_size,
            "hidden_act": act,
        },
        "vision_config": {
            "hidden_size": v.width,
            "intermediate_size": 4 * v.width,
            "num_hidden_layers": v.layers,
            "num_attention_heads": v.heads,
            "patch_size": v.patch_size,
            "image_size": v.image_size,
            "hidden_act": act,
        },
        "projection_dim": cfg.embed_dim,
    }


def hf_to_openai(hf_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a Hugging Face CLIPModel state dict into OpenAI layout.

    HF keeps separate ``q/k/v_proj`` linears; ours (like ``nn.MultiheadAttention``) holds one
    ``in_proj`` of shape ``[3D, D]`` with rows q, k, v. HF projections are ``nn.Linear``
    (``[E, D]``); OpenAI's are matrices applied as ``x @ proj`` (``[D, E]``), hence the transpose.
    Keys this mapping does not know are kept as they are, so the strict check reports them.
    """
    out: dict[str, torch.Tensor] = {}
    qkv: dict[str, dict[str, torch.Tensor]] = {}  # "<block prefix>|weight" -> {"q": ..., "k": ..., "v": ...}
    for key, tensor in hf_state.items():
        if key in HF_BUFFERS:
            continue
        if key in HF_RENAMES:
            out[HF_RENAMES[key]] = tensor
        elif key in HF_TRANSPOSED:
            out[HF_TRANSPOSED[key]] = tensor.t().contiguous()  # [E, D] -> [D, E]
        elif (block := _hf_block_key(key)) is not None:
            prefix, rest = block
            module, param = rest.rsplit(".", 1)  # "self_attn.q_proj", "weight"
            if module in HF_QKV:
                qkv.setdefault(f"{prefix}attn.in_proj_{param}", {})[HF_QKV[module]] = tensor
            else:
                for hf_name, ours in HF_BLOCK_RENAMES.items():
                    if rest.startswith(hf_name):
                        rest = ours + rest[len(hf_name) :]
                        break
                out[prefix + rest] = tensor
        else:
            out[key] = tensor
    for name, parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise CheckpointError(
                f"Hugging Face state dict: {name} needs q, k and v projections, found {sorted(parts)}"
            )
        out[name] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)  # [3D, D] or [3D]
    return out


def _hf_block_key(key: str) -> tuple[str, str] | None:
    """``text_model.encoder.layers.3.mlp.fc1.bias`` -> (``transformer.resblocks.3.``, ``mlp.fc1.bias``)."""
    for hf_prefix, ours in HF_ENCODERS.items():
        if key.startswith(hf_prefix):
            index, rest = key[len(hf_prefix) :].split(".", 1)
            return f"{ours}{index}.", rest
    return None


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
    "config_from_hf",
    "hf_to_openai",
    "load_clip",
    "save_clip",
]
