"""The world's clips as ``vop``'s generic CSV reader gives them, and ``vop prepare``'s frame cache
of every clip (decoded once, all of its frames)."""

from __future__ import annotations

from pathlib import Path

from vop_demo.world.spec import WorldSpec


def world_records(world: Path) -> list:
    """Every clip of the world (train, val, test), as the generic reader gives them."""
    from vop.data.annotations import load_records

    return [r for split in ("train", "val", "test") for r in load_records("csv", world, split, world)]


def prepare_cache(world: Path, cache_dir: Path, progress: bool) -> Path:
    """Decode every clip once (``vop prepare``'s cache), all of its frames."""
    from vop.data.cache import build_cache

    spec = WorldSpec()
    build_cache(world_records(world), cache_dir, frames=spec.frames, short_side=spec.size, on_error="raise",
                progress=progress)
    return cache_dir
