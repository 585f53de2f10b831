"""``vop index``: encode a folder of videos once into a searchable index (incremental, resumable).

Examples::

    vop index ~/videos --backbone ViT-B-32.pt --adapter runs/msrvtt-vop/adapter --out ~/videos.vop
    vop index ~/videos --out ~/videos.vop                    # again: the recorded backbone, new files only
    vop index data/msrvtt/videos --backbone ViT-B-32.pt --out IDX --cache cache/msrvtt   # `vop prepare` frames
    vop index ~/videos --backbone ViT-B-32.pt --out IDX --shard 0/4     # one of 4 processes/machines
    torchrun --nproc_per_node 4 -m vop index ~/videos --backbone ViT-B-32.pt --out IDX
    vop index --merge IDX                                               # combine IDX/shards/* into IDX
"""

from __future__ import annotations

import argparse
import sys

from vop.cli.args import frames_arg, threads_arg
from vop.cli.messages import error, log_to_stderr, plain, shown

USER_ERRORS = (OSError, ValueError, KeyError)  # bad paths, mismatched hashes, bad configs: exit 2


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "index",
        help="index a folder of videos for search",
        description=plain(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("video_dir", nargs="?", help="folder searched recursively for video files")
    p.add_argument("--out", required=True, help="index folder (created; re-runs update it)")
    p.add_argument("--backbone", help="CLIP weights: OpenAI .pt, state dict, HF folder or bundled name "
                                      "(default: the one the adapter, else the index at OUT, records)")
    p.add_argument("--config", help="CLIP config name when the weights file does not say (e.g. ViT-B-32)")
    p.add_argument("--adapter", help="adapter folder from `vop train` (default: zero-shot CLIP)")
    p.add_argument("--frames", type=frames_arg, help="frames per video (default: the adapter's, else 12)")
    p.add_argument("--cache", metavar="DIR", help="frame cache from `vop prepare`: videos it holds (same file, "
                                                   "size and time) are read from it instead of decoded")
    p.add_argument(
        "--shard",
        help="i/n: index only shard i of n into OUT/shards/i-of-n (default under torchrun: RANK/WORLD_SIZE)",
    )
    p.add_argument("--merge", action="store_true", help="merge OUT/shards/* into OUT (no encoding)")
    p.add_argument(
        "--vector-index",
        choices=("auto", "exact", "pq", "ivf"),
        help="FAISS index kind (default: as last time, first time auto: exact below 50k videos, pq above)",
    )
    p.add_argument("--retry-failed", action="store_true", help="try undecodable videos again")
    p.add_argument("--threads", type=threads_arg, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--precision", choices=("fp32", "int8"),
                   help="backbone precision; int8: linear layers in int8, vectors within cosine 0.999 of "
                        "fp32 and searchable with either (default: fp32; see README, int8 inference)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _shard(args) -> tuple[int, int] | None:
    import os

    from vop.index.discover import parse_shard

    if args.shard:
        return parse_shard(args.shard)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return (int(os.environ.get("RANK", "0")), world) if world > 1 else None


def run(args) -> int:
    import json
    from dataclasses import asdict

    log_to_stderr()  # "skipping NAME: REASON" lines, names escaped
    try:
        report = _merge(args) if args.merge else _index(args)
    except USER_ERRORS as err:
        return error("index", err)
    if args.json:
        print(json.dumps(asdict(report), indent=2))
        return 0
    print(report.summary())
    for e in report.errors:
        print(f"  undecodable: {shown(e['path'])}: {shown(e['error'])}")
    for w in report.warnings:
        print(f"  indexed with a warning: {shown(w['path'])}: {shown(w['warning'])}")
    if report.shard:
        i, n = report.shard
        print(f"shard {i}/{n} done; when all {n} are done: vop index --merge --out {shown(args.out)}")
    return 0


def _merge(args):
    from vop.index.build import merge_shards

    if args.video_dir:
        raise ValueError("--merge takes no VIDEO_DIR (the shards remember their folder)")
    return merge_shards(args.out, vector_index=args.vector_index)


def _recorded_backbone(args):
    """(BackboneRef, file that records it) of the adapter, else of the index at --out; else (None, None)."""
    from pathlib import Path

    if args.adapter:
        from vop.adapter import META_FILE, backbone_ref, read_metadata

        return backbone_ref(read_metadata(args.adapter)), Path(args.adapter) / META_FILE
    from vop.index.manifest import MANIFEST_NAME, read_manifest

    if (Path(args.out) / MANIFEST_NAME).is_file():
        return read_manifest(args.out).backbone, Path(args.out) / MANIFEST_NAME
    return None, None


def _index(args):
    import torch

    from vop.backbone.reference import resolve_backbone
    from vop.index.build import build_index
    from vop.index.encoder import VideoEncoder

    if not args.video_dir:
        raise ValueError("VIDEO_DIR is required (or --merge to combine shards)")
    if args.threads:
        torch.set_num_threads(args.threads)
    from vop.backbone.quantize import DEFAULT_CPU_PRECISION

    precision = args.precision or DEFAULT_CPU_PRECISION
    recorded, where = _recorded_backbone(args)
    clip = resolve_backbone(recorded, args.backbone, config=args.config, recorded_in=where,
                            need="--backbone is required (the CLIP weights to encode the videos with)")
    cache = None
    if args.cache:
        from vop.data.cache import FrameCache

        cache = FrameCache(args.cache)
    encoder = VideoEncoder.from_clip(clip, args.adapter, frames=args.frames, precision=precision, cache=cache)
    if not args.quiet and not args.json:
        print(f"encoding at {encoder.precision}", file=sys.stderr)
    return build_index(
        args.video_dir,
        args.out,
        encoder,
        shard=_shard(args),
        progress=not args.quiet,
        retry_failed=args.retry_failed,
        vector_index=args.vector_index,
    )
