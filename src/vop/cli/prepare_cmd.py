"""``vop prepare``: validate a dataset, then decode every video once into a frame cache.

Examples::

    vop prepare msrvtt --annotations data/msrvtt --videos data/msrvtt/videos --cache cache/msrvtt
    vop prepare csv --annotations my.csv --videos ~/clips --cache cache/mine --config ViT-L-14

Each video keeps ``--frames`` frames (segment middles) with the short side resized to the image
size of the backbone config ``--config`` (default ViT-B-32), read from that config, or to
``--size`` for a backbone with no named config; training and evaluation then read those pixels
(``cache:`` in the config) instead of decoding video. Resumable: a re-run skips finished videos, a killed run loses at most one.
All readable splits share one cache. Undecodable videos are listed and skipped
(``--on-error raise`` stops at the first). Every error is one line and exit status 2; a
cache folder that cannot be written (not a folder, no permission, a full disk) keeps every video
cached before it and leaves no half-written file.
"""

from __future__ import annotations

import argparse
import json

from vop.cli.args import frames_arg, image_size_arg, threads_arg
from vop.cli.messages import error, plain
from vop.cli.methods_cmd import DEFAULT_CONFIG

from .data_cmd import add_dataset_args, format_report


def register(subparsers) -> None:
    p = subparsers.add_parser("prepare", help="validate a dataset and build its frame cache", description=plain(__doc__),
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataset_args(p, videos_required=True)
    p.add_argument("--cache", required=True, metavar="DIR", help="cache folder (created; reused to resume)")
    p.add_argument("--frames", type=frames_arg, default=32, help="frames kept per video (default 32; at most 1024)")
    p.add_argument("--config", default=None, metavar="NAME",
                   help=f"backbone config whose image size the frames get (default {DEFAULT_CONFIG})")
    p.add_argument("--size", type=image_size_arg, default=None,
                   help="short side of cached frames instead (16 to 4096); default: --config's image size")
    p.add_argument("--workers", type=threads_arg, default=1,
                   help="decoding processes (default 1; FFmpeg threads anyway)")
    p.add_argument("--on-error", choices=("skip", "raise"), default="skip", help="undecodable videos")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from vop.backbone.clip import get_config
    from vop.data.annotations import VideoFinder, check_dataset, load_records
    from vop.data.cache import build_cache
    from vop.data.decode import DecodeError

    try:
        size = args.size or get_config(args.config or DEFAULT_CONFIG).vision.image_size
    except KeyError as err:
        return error("prepare", err.args[0])
    try:
        report = check_dataset(args.dataset, args.annotations, args.videos, args.splits)
        print(format_report(report), flush=True)
        finder = VideoFinder(args.videos)
        records = [r for split, entry in report["splits"].items() if entry.get("ok")
                   for r in load_records(args.dataset, args.annotations, split, finder=finder)]
        if not records:
            return error("prepare", "no split could be read; nothing to cache")
        summary = build_cache(records, args.cache, frames=args.frames, short_side=size,
                              on_error=args.on_error, progress=not args.no_progress,
                              workers=args.workers)
    except (DecodeError, ValueError, OSError) as err:  # DecodeError: --on-error raise met a bad video
        return error("prepare", err)
    print(json.dumps(summary))
    return 0
