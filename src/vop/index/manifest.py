"""The index manifest: what produced the vectors, so a query is encoded the same way.

A query encoded by another backbone or adapter lands in a different embedding space and
returns confident nonsense, so every reader checks the hashes recorded here.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
ADAPTER_FILES = ("adapter.safetensors", "adapter.json")


class IndexMismatchError(ValueError):
    """The index was built with another backbone/adapter/settings than the ones offered."""


@dataclass
class Manifest:
    root: str  # absolute path of the collection; rows store paths relative to it
    backbone_name: str
    backbone_source: str
    backbone_sha256: str
    method: str
    frames: int
    image_size: int
    dim: int
    adapter_name: str | None = None
    adapter_path: str | None = None
    adapter_sha256: str | None = None
    shard: list[int] | None = None  # [i, n] for a shard written by `vop index --shard i/n`
    # backbone precision the vectors were encoded at: "fp32", "int8", or "mixed" (runs at both);
    # not part of model_key: int8 vectors stay comparable to fp32 ones (vop.backbone.quantize)
    precision: str = "fp32"
    vop_version: str = ""
    format: int = FORMAT_VERSION
    extra: dict = field(default_factory=dict)

    @property
    def model_key(self) -> dict:
        """The fields that must agree for two sets of vectors to be comparable."""
        return {
            k: getattr(self, k)
            for k in ("backbone_sha256", "adapter_sha256", "method", "frames", "image_size", "dim")
        }


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
    data = json.loads(path.read_text())
    if data.get("format") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: index format {data.get('format')} is not supported "
            f"(this vop reads format {FORMAT_VERSION}); re-run `vop index`"
        )
    known = Manifest.__dataclass_fields__
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"{path}: unknown manifest keys {unknown}")
    return Manifest(**data)


def write_manifest(index_dir: str | Path, manifest: Manifest) -> None:
    """Atomic write (temp file + rename) so a kill never leaves half a manifest."""
    path = Path(index_dir) / MANIFEST_NAME
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(asdict(manifest), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def check_same_model(expected: Manifest, actual: Manifest, what: str) -> None:
    """Raise :class:`IndexMismatchError` naming every field where ``actual`` differs."""
    a, b = expected.model_key, actual.model_key
    diff = [f"{k}: index has {a[k]!r}, {what} has {b[k]!r}" for k in a if a[k] != b[k]]
    if diff:
        raise IndexMismatchError(f"{what} does not match the index it is used with:\n  " + "\n  ".join(diff))
