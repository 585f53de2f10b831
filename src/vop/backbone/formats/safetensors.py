"""``.safetensors`` files: any state dict in OpenAI layout, and the files that
:func:`~vop.backbone.loading.save_clip` writes, which carry their CLIP config in the metadata and
may store the token embedding as rows.

A safetensors file holds only tensors and a string-to-string header, so reading one runs nothing;
this module turns the library's errors into one line and checks vop's own metadata before use.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from vop.backbone.clip import CLIPConfig
from vop.backbone.formats.errors import CheckpointError, first_line
from vop.backbone.formats.state_dict import unwrap

CONFIG_METADATA_KEY = "vop_clip_config"  # safetensors metadata: JSON of CLIPConfig.to_dict()
SPARSE_ROWS_KEY = "vop_sparse_rows"  # safetensors metadata: a table stored as .rows + .values
TOKEN_TABLE = "token_embedding.weight"  # the only table that may be stored as rows


def read_safetensors(path: Path, error=None) -> dict[str, torch.Tensor]:
    """``safetensors.torch.load_file`` with a one-line error for a file that is not safetensors."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise (error or CheckpointError)(
            f"{path}: not a readable safetensors file ({first_line(err)})"
        ) from None


def safetensors_metadata(path: Path) -> dict[str, str]:
    """The file's string-to-string metadata (``{}`` when it has none)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path}: not a readable safetensors file ({first_line(err)})") from None


def read_clip_safetensors(path: Path, named: CLIPConfig | None
                          ) -> tuple[dict[str, torch.Tensor], CLIPConfig | None]:
    """A ``.safetensors`` file -> (OpenAI-layout state dict, declared config or None).

    The config is the file's metadata's, else ``named`` (the config the file's name names)."""
    state = read_safetensors(path)
    meta = safetensors_metadata(path)
    cfg = config_from_metadata(meta, path) or named
    return unwrap(expand_sparse_rows(state, meta, cfg, path), path), cfg


def config_from_metadata(meta: dict[str, str], path: Path) -> CLIPConfig | None:
    """The CLIP config :func:`~vop.backbone.loading.save_clip` stored in the metadata, or None."""
    if CONFIG_METADATA_KEY not in meta:
        return None
    try:
        return CLIPConfig.from_dict(json.loads(meta[CONFIG_METADATA_KEY]))
    except (ValueError, KeyError, TypeError, RecursionError) as e:
        raise CheckpointError(
            f"{path}: metadata key {CONFIG_METADATA_KEY!r} is not a valid CLIP config: {str(e)[:300]}"
        ) from None


def pack_token_rows(state: dict[str, torch.Tensor], keep_tokens) -> dict[str, str]:
    """Keep only the rows ``keep_tokens`` (token ids) of the token embedding in ``state`` (as
    ``.rows`` + ``.values``); returns the metadata entry that tells :func:`expand_sparse_rows` so."""
    rows = torch.tensor(sorted(set(keep_tokens)), dtype=torch.int64)
    table = state.pop(TOKEN_TABLE)
    state[TOKEN_TABLE + ".rows"], state[TOKEN_TABLE + ".values"] = rows, table[rows].contiguous()
    return {SPARSE_ROWS_KEY: TOKEN_TABLE}


def expand_sparse_rows(state: dict[str, torch.Tensor], meta: dict[str, str], cfg: CLIPConfig | None,
                       path: Path) -> dict[str, torch.Tensor]:
    """Undo :func:`pack_token_rows`: rows not stored become zero rows of the full table."""
    name = meta.get(SPARSE_ROWS_KEY)
    if name is None:
        return state
    rows, values = state.pop(name + ".rows", None), state.pop(name + ".values", None)
    if rows is None or values is None or cfg is None or rows.ndim != 1 or values.shape[0] != rows.shape[0]:
        raise CheckpointError(f"{path}: sparse table {name!r} is incomplete (needs .rows, .values and a config)")
    if name != TOKEN_TABLE or values.ndim != 2 or values.shape[1] != cfg.text.width or rows.is_floating_point():
        raise CheckpointError(f"{path}: sparse table {name!r}: values of shape {tuple(values.shape)} do not fit "
                              f"the token embedding [vocab, {cfg.text.width}] of the config")
    vocab = cfg.text.vocab_size
    if rows.numel() and not (0 <= int(rows.min()) and int(rows.max()) < vocab):
        raise CheckpointError(f"{path}: sparse table {name!r} names rows outside 0..{vocab - 1}")
    table = torch.zeros(vocab, values.shape[1], dtype=values.dtype)
    table[rows] = values
    state[name] = table
    return state
