"""Limits for numbers read from files a user may not have written (adapter.json, an index's
manifest.json, a checkpoint's config), and small readers that hold values to them: a hostile
``frames: 1000000000`` must fail in one line, not allocate 256 GB."""

from __future__ import annotations

import math

MAX_FRAMES = 1024  # frames per video (VoP uses 12; long-video methods 64)
MAX_IMAGE_SIZE = 4096
MAX_DIM = 65536  # embedding width
MAX_CONTEXT = 4096  # text tokens
MAX_COMPONENT_INT = 100_000  # any integer inside a method's component config (prompt lengths, depths)
MAX_LAYERS = 256  # transformer blocks per encoder (ViT-bigG has 48)
MAX_VOCAB = 1_000_000  # rows of the token embedding (CLIP's BPE has 49,408)
MAX_PROMPT_TOKENS = 1024  # tokens of one prompt kind per layer (VoP uses 4 to 8)
MAX_SEARCH_PARAM = 65_536  # FAISS nprobe (cells) and k_factor (candidates per result): flags and vectors.json
# Memory ceilings, counted in parameters (float32: 4 bytes each), checked before anything is built.
MAX_BACKBONE_PARAMETERS = 3_000_000_000  # a CLIP (ViT-bigG-14 has about 2.5 G)
MAX_METHOD_PARAMETERS = 500_000_000  # what a method adds to its backbone (vop-c on ViT-B/32: 14.3 M)


def read_json_object(path, error=ValueError) -> dict:
    """A JSON file that must hold an object; bad JSON, bad UTF-8 or absurd nesting is one line."""
    import json
    from pathlib import Path

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise error(f"{path}: not valid JSON ({type(e).__name__}: {str(e)[:120]})") from None
    if not isinstance(data, dict):
        raise error(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def check_int(value, lo: int, hi: int, what: str, error=ValueError) -> int:
    """``value`` if it is an int (not a bool) in ``[lo, hi]``, else ``error`` naming ``what``."""
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise error(f"{what} is {str(value)[:40]!r}; expected an integer from {lo} to {hi}")
    return value


def check_str(value, what: str, error=ValueError, max_len: int = 4096, optional: bool = False):
    if value is None and optional:
        return value
    if not isinstance(value, str) or len(value) > max_len:
        raise error(f"{what} must be a string of at most {max_len} characters")
    return value


def check_tree(value, what: str, error=ValueError, depth: int = 0) -> None:
    """Plain JSON values only, integers within ``MAX_COMPONENT_INT``, nested at most 8 deep."""
    if depth > 8:
        raise error(f"{what} is nested too deeply")
    if isinstance(value, dict):
        for k, v in value.items():
            check_tree(v, f"{what}.{k}", error, depth + 1)
    elif isinstance(value, list):
        if len(value) > 1000:
            raise error(f"{what} has {len(value)} entries; at most 1000")
        for i, v in enumerate(value):
            check_tree(v, f"{what}[{i}]", error, depth + 1)
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int):
        check_int(value, -MAX_COMPONENT_INT, MAX_COMPONENT_INT, what, error)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise error(f"{what} is {value}; expected a finite number")
    elif isinstance(value, str):
        check_str(value, what, error)
    else:
        raise error(f"{what} has unexpected type {type(value).__name__}")
