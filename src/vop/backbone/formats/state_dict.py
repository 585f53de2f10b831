"""Plain state dicts (``.pt`` / ``.pth`` / ``.bin``) in OpenAI / open_clip key layout.

Read with ``torch.load(weights_only=True)`` only: a pickle that names a Python object is refused in
one line, never unpickled. Training checkpoints are accepted: a ``{"state_dict": ...}`` wrapper and
``module.`` / ``model.`` key prefixes are stripped, and the scalars OpenAI stores beside the weights
are dropped.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vop.backbone.formats.errors import CheckpointError, first_line

TORCH_SUFFIXES = (".pt", ".pth", ".bin")
# Scalars stored next to the weights in OpenAI's archives; they are not parameters.
NON_PARAMETER_KEYS = ("input_resolution", "context_length", "vocab_size")
# Wrappers used by training checkpoints (open_clip saves {"epoch", "state_dict", ...}).
CONTAINER_KEYS = ("state_dict", "model", "module")
WRAPPER_PREFIXES = ("module.", "model.")


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
        raise error(f"{path}: not a readable torch checkpoint ({first_line(err)})") from None


def unwrap(obj, path: Path) -> dict[str, torch.Tensor]:
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


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A ``.pt`` / ``.pth`` / ``.bin`` state dict -> its parameters in OpenAI layout."""
    return unwrap(torch_load_weights(path), path)
