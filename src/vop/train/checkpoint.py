"""Resume checkpoints: written atomically, readable with ``torch.load(weights_only=True)``.

Everything is stored as tensors or plain Python types (the numpy and ``random`` RNG states are
converted), so loading never needs to unpickle arbitrary objects.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch


def rng_state() -> dict:
    np_state = np.random.get_state()
    py_state = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "python": {"version": py_state[0], "state": list(py_state[1]), "gauss": py_state[2]},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write to a temporary file next to ``path`` and rename it, so a kill never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


class CheckpointFileError(ValueError):
    """A resume checkpoint that cannot be used (corrupt, holds objects, wrong structure)."""


# what a resume checkpoint holds (vop.train.setup.checkpoint_state), checked before any of it is used
REQUIRED = {"config": dict, "trainable": dict, "progress": dict, "rng": dict}


def load_checkpoint(path: str | Path) -> dict:
    """``torch.load(weights_only=True)`` (never arbitrary objects) with one-line errors."""
    from vop.backbone.formats.state_dict import torch_load_weights

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint to resume from: {path}")
    state = torch_load_weights(path, error=CheckpointFileError)
    if not isinstance(state, dict):
        raise CheckpointFileError(f"{path}: not a vop checkpoint (holds a {type(state).__name__})")
    return state


def check_resume_state(state: dict, path) -> dict:
    """The top-level structure of a resume checkpoint, checked before any of it is used."""
    for key, kind in REQUIRED.items():
        if not isinstance(state.get(key), kind):
            raise CheckpointFileError(f"{path}: not a vop resume checkpoint ('{key}' missing or malformed)")
    if not all(isinstance(v, torch.Tensor) for v in state["trainable"].values()):
        raise CheckpointFileError(f"{path}: 'trainable' holds something other than tensors")
    # the backbone's rule: tensors may not stand for much more than the bytes the file stores (a
    # stride-0 view of one number as a huge optimizer state, which loading it would then allocate)
    from vop.backbone.loading import check_storage

    check_storage(tensors_in(state, path), str(path), error=CheckpointFileError)
    return state


MAX_DEPTH = 16  # nesting of a resume checkpoint (optimizer state: 4 levels)


def tensors_in(value, path, depth: int = 0, at: str = "") -> dict[str, torch.Tensor]:
    """Every tensor in a checkpoint's nested dicts / lists, by its place (``optimizer.state.0.exp_avg``)."""
    if isinstance(value, torch.Tensor):
        return {at: value}
    if depth > MAX_DEPTH:
        raise CheckpointFileError(f"{path}: nested more than {MAX_DEPTH} levels deep")
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, (list, tuple)) else ()
    found = {}
    for key, item in items:
        found.update(tensors_in(item, path, depth + 1, f"{at}.{key}" if at else str(key)))
    return found

