"""Save and load only what a method trained: ``adapter.safetensors`` + ``adapter.json``.

The json names everything needed to rebuild the method on the same frozen backbone (method and
its resolved component list, frames, text budget) and identifies that backbone by config name
and the sha256 of its weights. Loading onto a different backbone is refused. For ``full`` the
"adapter" is the whole model (every backbone tensor but ``logit_scale``); the json says so.
Both files are written atomically (temporary file + rename), so a crash never leaves half a file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from vop import __version__
from vop.backbone.clip import CLIP
from vop.backbone.reference import BackboneRef, validate_ref
from vop.model import VideoTextModel, build_model

SCHEMA_VERSION = 1
WEIGHTS_FILE = "adapter.safetensors"
META_FILE = "adapter.json"


class AdapterError(ValueError):
    """An adapter that cannot be loaded (missing files, other backbone, wrong tensors)."""


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def adapter_metadata(model: VideoTextModel, extra: dict | None = None) -> dict:
    b = model.parameter_budget()
    return {
        "schema_version": SCHEMA_VERSION,
        "vop_version": __version__,
        "method": model.method,
        "method_config": model.method_config,
        "whole_model": model.method == "full",
        "backbone": BackboneRef.of(model.clip, model.backbone_sha256).to_dict(),
        "frames": model.frames,
        "context_length": model.context_length,
        "parameters": {"trainable": b["trainable"], "total": b["total"],
                       "breakdown": model.parameter_breakdown()},
        "extra": extra or {},
    }


def save_adapter(model: VideoTextModel, directory: str | os.PathLike, extra: dict | None = None) -> Path:
    """Write the trainable tensors and the metadata to ``directory`` (created); returns it."""
    from safetensors.torch import save_file

    from vop.backbone.loading import check_finite

    d = Path(directory)
    tensors = {n: p.detach().to("cpu").contiguous() for n, p in model.trainable_named_parameters()}
    meta = adapter_metadata(model, extra)
    # never write what every loader would refuse (out-of-range fields, NaN/Inf tensors)
    validate_metadata(json.loads(json.dumps(meta)), d / META_FILE)
    check_finite(tensors, f"{d / WEIGHTS_FILE} (not written)", error=AdapterError)
    if d.exists() and not d.is_dir():
        raise AdapterError(f"{d}: exists and is not a folder")
    d.mkdir(parents=True, exist_ok=True)
    _atomic_write(d / WEIGHTS_FILE, lambda p: save_file(tensors, str(p), metadata={"format": "pt"}))
    _atomic_write(d / META_FILE, lambda p: p.write_text(json.dumps(meta, indent=2) + "\n"))
    return d


def read_metadata(directory: str | os.PathLike) -> dict:
    path = Path(directory) / META_FILE
    if not path.is_file():
        raise AdapterError(f"{path}: not found (an adapter folder holds {META_FILE} and {WEIGHTS_FILE})")
    from vop.limits import read_json_object

    meta = read_json_object(path, AdapterError)
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise AdapterError(f"{path}: schema_version {meta.get('schema_version')!r}, this vop reads {SCHEMA_VERSION}")
    validate_metadata(meta, path)
    return meta


def validate_metadata(meta: dict, path) -> None:
    """Every field the loader uses, checked against sane bounds before anything is allocated."""
    from vop.limits import MAX_CONTEXT, MAX_FRAMES, check_int, check_str, check_tree

    def err(msg):
        return AdapterError(f"{path}: {msg}")

    check_str(meta.get("method"), "method", err, max_len=100)
    check_int(meta.get("frames"), 1, MAX_FRAMES, "frames", err)
    if meta.get("context_length") is not None:
        check_int(meta.get("context_length"), 1, MAX_CONTEXT, "context_length", err)
    config = meta.get("method_config")
    if not isinstance(config, dict):
        raise err("method_config must be an object")
    check_tree(config, "method_config", err)
    comps = config.get("components")
    if not isinstance(comps, list) or not all(isinstance(c, dict) and isinstance(c.get("type"), str) for c in comps):
        raise err("method_config.components must be a list of objects, each with a 'type' string")
    validate_ref(meta.get("backbone"), err)
    # informational fields (vop adapter inspect prints them): optional, but of the right type
    check_str(meta.get("vop_version"), "vop_version", err, max_len=100, optional=True)
    for key, kind in (("whole_model", bool), ("extra", dict), ("parameters", dict)):
        if meta.get(key) is not None and not isinstance(meta[key], kind):
            raise err(f"{key} must be {'true or false' if kind is bool else 'an object'}")
    if meta.get("extra") is not None:
        check_tree(meta["extra"], "extra", err)
    params = meta.get("parameters") or {}
    for key in ("trainable", "total"):
        if key in params:
            check_int(params[key], 0, 10**13, f"parameters.{key}", err)
    breakdown = params.get("breakdown", {})
    if not isinstance(breakdown, dict):
        raise err("parameters.breakdown must be an object")
    for key, value in breakdown.items():
        check_int(value, 0, 10**13, f"parameters.breakdown.{str(key)[:40]}", err)


def read_tensor_shapes(path: Path, error=AdapterError) -> dict[str, tuple[int, ...]]:
    """Names and shapes from a safetensors header (no tensor data is read); garbage is one line."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in sorted(f.keys())}
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise error(f"{path}: not a readable safetensors file ({first})") from None


def backbone_ref(meta: dict) -> BackboneRef:
    """The backbone an adapter was trained on (``read_metadata``'s result; old adapters too)."""
    return BackboneRef.from_dict(meta["backbone"])


def check_backbone(meta: dict, clip: CLIP, where: str = "adapter") -> None:
    """Refuse a backbone other than the one the adapter was trained on."""
    want = meta["backbone"]
    if want["name"] != clip.cfg.name or want["weights_sha256"] != clip.weights_sha256:
        raise AdapterError(
            f"{where} was trained on backbone {want['name']} (weights sha256 {want['weights_sha256'][:16]}...) "
            f"but the given backbone is {clip.cfg.name} (weights sha256 {clip.weights_sha256[:16]}..., "
            f"from {getattr(clip, 'source', 'unknown')}); load the backbone it was trained on")


def load_adapter(directory: str | os.PathLike, clip: CLIP) -> VideoTextModel:
    """Rebuild the saved method on ``clip`` and load its tensors (strict: every key must match)."""
    from vop.backbone.formats.safetensors import read_safetensors
    from vop.backbone.loading import check_finite
    from vop.model import method_shapes

    d = Path(directory)
    meta = read_metadata(d)
    check_backbone(meta, clip, where=str(d))
    weights = d / WEIGHTS_FILE
    if not weights.is_file():
        raise AdapterError(f"{weights}: not found")

    def rebuild(build):
        try:
            # adapters without the field were all tokenized to CLIP's 77 (the backbone's default)
            return build(meta["method"], meta["frames"], overrides=meta["method_config"],
                         context_length=meta.get("context_length"))
        except (TypeError, ValueError, KeyError, IndexError, RuntimeError, AssertionError) as e:
            msg = e.args[0] if isinstance(e, KeyError) and e.args else e
            raise AdapterError(f"{d / META_FILE}: cannot rebuild method {meta['method']!r}: {msg}") from None

    # the method's tensors (meta device) against the file's header, before anything is built
    expected = rebuild(lambda *a, **k: method_shapes(clip.cfg, *a, **k))
    found = read_tensor_shapes(weights)
    missing, unexpected = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    if missing or unexpected:
        raise AdapterError(f"{weights}: tensors do not match method {meta['method']!r}; "
                           f"missing: {missing or 'none'}; unexpected: {unexpected or 'none'}")
    for name, shape in expected.items():
        if found[name] != shape:
            raise AdapterError(f"{weights}: {name} has shape {found[name]}, the method needs {shape}")
    model = rebuild(lambda *a, **k: build_model(clip, *a, **k))
    tensors = read_safetensors(weights, error=AdapterError)
    params = dict(model.trainable_named_parameters())
    with torch.no_grad():
        check_finite({name: tensors[name] for name in params}, str(weights), error=AdapterError)
        for name, p in params.items():
            t = tensors[name]
            p.copy_(t.to(p.dtype))
    return model
