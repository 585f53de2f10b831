"""The index manifest: what produced the vectors, so a query is encoded the same way.

A query encoded by another backbone or adapter lands in a different embedding space and
returns confident nonsense, so every reader checks the hashes recorded here.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import MISSING, asdict, dataclass, field
from pathlib import Path

from vop.backbone.reference import BackboneRef, validate_ref

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 2  # 2: the backbone as one object (vop.backbone.reference); 1: three flat backbone_* keys
READS = (1, 2)
FLAT_BACKBONE = {"backbone_name": "name", "backbone_source": "source", "backbone_sha256": "weights_sha256"}
ADAPTER_FILES = ("adapter.safetensors", "adapter.json")


class IndexMismatchError(ValueError):
    """The index was built with another backbone/adapter/settings than the ones offered."""


class ManifestError(ValueError):
    """A manifest.json that is not valid: the message names the file and the field."""


@dataclass
class Manifest:
    root: str  # absolute path of the collection; rows store paths relative to it
    backbone: BackboneRef
    method: str
    frames: int
    image_size: int
    dim: int
    adapter_name: str | None = None
    adapter_path: str | None = None
    adapter_sha256: str | None = None
    shard: list[int] | None = None  # [i, n] for a shard written by `vop index --shard i/n`
    # runtime ("torch", "openvino") and precision ("fp32", "bf16", "int8") the vectors were encoded
    # at, or "mixed" (runs at several); not part of model_key: the vectors of every runtime and
    # precision stay comparable (vop.runtime); calibration: the int8 calibration data ({videos, source})
    precision: str = "fp32"
    runtime: str = "torch"
    calibration: dict | None = None
    vop_version: str = ""
    format: int = FORMAT_VERSION
    extra: dict = field(default_factory=dict)

    @property
    def backbone_name(self) -> str:
        return self.backbone.name

    @property
    def backbone_sha256(self) -> str:
        return self.backbone.weights_sha256

    @property
    def model_key(self) -> dict:
        """The fields that must agree for two sets of vectors to be comparable."""
        return {
            k: getattr(self, k)
            for k in ("backbone_sha256", "adapter_sha256", "method", "frames", "image_size", "dim")
        }

    def to_dict(self) -> dict:
        return asdict(self)


def adapter_sha256(adapter_dir: str | Path) -> str:
    """sha256 over the adapter's files (tensors + method config), independent of the folder name."""
    adapter_dir = Path(adapter_dir)
    h = hashlib.sha256()
    for name in ADAPTER_FILES:
        path = adapter_dir / name
        if not path.is_file():
            raise FileNotFoundError(f"adapter folder {adapter_dir} has no {name}")
        h.update(name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def read_manifest(index_dir: str | Path) -> Manifest:
    path = Path(index_dir) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{index_dir} is not a vop index: {MANIFEST_NAME} not found")
    from vop.limits import read_json_object

    data = read_json_object(path, ManifestError)
    if data.get("format") not in READS:
        raise ValueError(
            f"{path}: index format {data.get('format')} is not supported "
            f"(this vop reads formats {', '.join(map(str, READS))}); re-run `vop index`"
        )
    if data["format"] == 1:
        data = _from_format_1(data, path)
    known = Manifest.__dataclass_fields__
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"{path}: unknown manifest keys {unknown}")
    required = [k for k, f in known.items() if f.default is MISSING and f.default_factory is MISSING]
    missing = sorted(k for k in required if k not in data)
    if missing:
        raise ValueError(f"{path}: manifest keys missing: {missing}")
    _validate(data, path)
    return Manifest(**{**data, "backbone": BackboneRef.from_dict(data["backbone"])})


def _from_format_1(data: dict, path: Path) -> dict:
    """A format-1 manifest (flat ``backbone_*`` keys) as format 2; the file itself is left alone."""
    missing = sorted(k for k in FLAT_BACKBONE if k not in data)
    if missing:
        raise ValueError(f"{path}: manifest keys missing: {missing}")
    data = dict(data)
    data["backbone"] = {ours: data.pop(flat) for flat, ours in FLAT_BACKBONE.items()}
    return {**data, "format": FORMAT_VERSION}


def _validate(data: dict, path: Path) -> None:
    """Types and sane bounds of every field, before any of them sizes an allocation."""
    from vop.index.discover import MAX_SHARDS
    from vop.limits import MAX_DIM, MAX_FRAMES, MAX_IMAGE_SIZE, check_int, check_str, check_tree

    def err(msg):
        return ValueError(f"{path}: {msg}")

    for key in ("root", "method"):
        check_str(data[key], key, err)
    validate_ref(data["backbone"], err)
    for key in ("adapter_name", "adapter_path", "adapter_sha256", "vop_version"):
        check_str(data.get(key), key, err, optional=True)
    check_int(data["frames"], 1, MAX_FRAMES, "frames", err)
    check_int(data["image_size"], 1, MAX_IMAGE_SIZE, "image_size", err)
    check_int(data["dim"], 1, MAX_DIM, "dim", err)
    if data.get("precision", "fp32") not in ("fp32", "bf16", "int8", "mixed"):
        raise err(f"precision must be fp32, bf16, int8 or mixed, got {data.get('precision')!r}")
    if data.get("runtime", "torch") not in ("torch", "openvino", "mixed"):
        raise err(f"runtime must be torch, openvino or mixed, got {data.get('runtime')!r}")
    if data.get("calibration") is not None:
        if not isinstance(data["calibration"], dict):
            raise err("calibration must be an object")
        check_tree(data["calibration"], "calibration", err)
    shard = data.get("shard")
    if shard is not None:
        if not (isinstance(shard, list) and len(shard) == 2):
            raise err("shard must be [i, n]")
        n = check_int(shard[1], 1, MAX_SHARDS, "shard n", err)
        check_int(shard[0], 0, n - 1, "shard i", err)
    if not isinstance(data.get("extra", {}), dict):
        raise err("extra must be an object")
    check_tree(data.get("extra", {}), "extra", err)


def mark_mixed(manifest: Manifest, others: list[Manifest]) -> bool:
    """Set ``runtime`` / ``precision`` (and ``calibration``) of ``manifest`` to "mixed" where rows
    of ``others`` were encoded otherwise; True when anything changed."""
    changed = False
    for key in ("runtime", "precision"):
        if any(getattr(o, key) != getattr(manifest, key) for o in others):
            setattr(manifest, key, "mixed")
            changed = True
    if any(o.calibration != manifest.calibration for o in others):
        manifest.calibration = {"mixed": True}
        changed = True
    return changed


def write_manifest(index_dir: str | Path, manifest: Manifest) -> None:
    """Atomic write (temp file + rename) so a kill never leaves half a manifest."""
    path = Path(index_dir) / MANIFEST_NAME
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest.to_dict(), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def check_same_model(expected: Manifest, actual: Manifest, what: str) -> None:
    """Raise :class:`IndexMismatchError` naming every field where ``actual`` differs."""
    a, b = expected.model_key, actual.model_key
    diff = [f"{k}: index has {a[k]!r}, {what} has {b[k]!r}" for k in a if a[k] != b[k]]
    if diff:
        raise IndexMismatchError(f"{what} does not match the index it is used with: " + "; ".join(diff))
