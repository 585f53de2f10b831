"""Where converted and compiled models live on disk, and the key that names them.

A converted (and, for int8, calibrated) graph is written once as OpenVINO IR under
``<cache dir>/<key>/`` and OpenVINO's own compiled blobs go beside it, so a second ``vop index`` or
``vop serve`` skips export, conversion, calibration and compilation. The key covers everything the
graph depends on: the backbone's sha256, the method's own tensors and config (for a saved adapter
this is its content; for an in-memory model too), frames, image size, text length, runtime,
precision, the OpenVINO (and NNCF) version, the calibration data's identity, and
:data:`GRAPH_VERSION` (raised whenever the exported graph changes).

The folder is ``$VOP_OPENVINO_CACHE`` if set, else ``$XDG_CACHE_HOME/vop/openvino`` (default
``~/.cache/vop/openvino``).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

GRAPH_VERSION = 3  # 2: int8 SmoothQuant alpha 0.5; 3: int8 patch embedding + projection fp32, SmoothQuant off
ENV_VAR = "VOP_OPENVINO_CACHE"


def cache_root(override: str | Path | None = None) -> Path:
    if override is not None:
        return Path(override)
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vop" / "openvino"


def method_sha256(model) -> str:
    """sha256 of what the method adds to the backbone: its config and its trained tensors
    (prompts, adapter modules, any backbone tensor it trains), in a fixed order."""
    h = hashlib.sha256()
    h.update(json.dumps(model.method_config, sort_keys=True, default=str).encode())
    for name, p in sorted(model.trainable_named_parameters(), key=lambda item: item[0]):
        t = p.detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def graph_key(model, graph: str, precision: str, calibration_id: str | None = None) -> dict:
    """The fields that name one converted graph (``graph``: "video" or "text")."""
    import openvino

    key = {
        "graph_version": GRAPH_VERSION,
        "graph": graph,
        "runtime": "openvino",
        "precision": precision,
        "openvino": openvino.__version__,
        "backbone_sha256": model.backbone_sha256,
        "method": str(model.method),
        "method_sha256": method_sha256(model),
        "frames": int(model.frames),
        "image_size": int(model.clip.cfg.vision.image_size),
        "context_length": int(model.context_length),
    }
    if calibration_id is not None:
        import nncf

        key.update(nncf=nncf.__version__, calibration=calibration_id)
    return key


def key_dir(root: Path, key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    return root / f"{key['graph']}-{key['precision']}-{digest}"
