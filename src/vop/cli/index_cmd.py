"""``vop index``: encode a folder of videos once into a searchable index (incremental, resumable).

Examples::

    vop index ~/videos --backbone ViT-B-32.pt --adapter runs/msrvtt-vop/adapter --out ~/videos.vop
    vop index ~/videos --out ~/videos.vop                    # again: the recorded backbone, new files only
    vop index data/msrvtt/videos --backbone ViT-B-32.pt --out IDX --cache cache/msrvtt   # `vop prepare` frames
    vop index ~/videos --backbone ViT-B-32.pt --out IDX --engine ray    # Ray Data on this machine
    vop index ~/videos --backbone ViT-B-32.pt --out IDX --engine ray --address auto --gpus-per-worker 1
    vop index ~/videos --backbone ViT-B-32.pt --out IDX --shard 0/4     # one of 4 processes/machines
    torchrun --nproc_per_node 4 -m vop index ~/videos --backbone ViT-B-32.pt --out IDX
    vop index --from-shards IDX/embeddings --out IDX                    # build once all shards are done
    vop index --from-shards s3://bucket/emb --backbone ViT-B-32.pt --out IDX   # shards any engine wrote

Every run writes Parquet embedding shards (IDX/embeddings/part-*.parquet, see docs/scaling.md)
and builds SQLite + FAISS from them; VIDEO_DIR, --from-shards may be fsspec URIs (file://, s3://, gs://).
"""

from __future__ import annotations

import argparse
import sys

from vop.cli.args import bounded_float, frames_arg, threads_arg
from vop.cli.messages import error, log_to_stderr, plain, shown
from vop.cli.runtime_args import add_runtime_args, runtime_choice

USER_ERRORS = (OSError, ValueError, KeyError)  # bad paths, mismatched hashes, bad configs: exit 2


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "index",
        help="index a folder of videos for search",
        description=plain(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("video_dir", nargs="?", help="folder (or fsspec URI) searched recursively for video files; "
                                                "with --from-shards: the collection root the shard paths are "
                                                "relative to (default: the shards' manifest's)")
    p.add_argument("--out", required=True, help="index folder (created; re-runs update it)")
    p.add_argument("--backbone", help="CLIP weights: OpenAI .pt, state dict, HF folder or bundled name "
                                      "(default: the one the adapter, else the index at OUT, records)")
    p.add_argument("--config", help="CLIP config name when the weights file does not say (e.g. ViT-B-32)")
    p.add_argument("--adapter", help="adapter folder from `vop train` (default: zero-shot CLIP)")
    p.add_argument("--frames", type=frames_arg,
                   help="frames per video, 1 to 1024 (default: the adapter's, else the index's at OUT, else 12)")
    p.add_argument("--cache", metavar="DIR", help="frame cache from `vop prepare`: videos it holds (same file, "
                                                   "size and time) are read from it instead of decoded")
    p.add_argument(
        "--shard",
        help="i/n: encode only shard i of n into OUT/embeddings (default under torchrun: RANK/WORLD_SIZE)",
    )
    p.add_argument("--from-shards", metavar="DIR", help="build OUT from Parquet embedding shards in DIR (path or "
                   "URI; no encoding); the embedding space is DIR/_manifest.json's, else --backbone/--adapter's")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: this process; ray: Ray Data (decode tasks + an encoder actor pool)")
    p.add_argument("--address", help="Ray cluster to join (auto, ray://HOST:PORT; default: a local Ray)")
    p.add_argument("--workers", type=threads_arg, help="Ray encoder actors (default 1)")
    p.add_argument("--gpus-per-worker", type=bounded_float(0, 64), default=0.0,
                   help="GPUs per Ray encoder actor (bf16 autocast on GPU; default 0: CPU actors)")
    p.add_argument("--memory-budget", default="4G",
                   help="peak memory for building SQLite + FAISS from the shards (default 4G)")
    p.add_argument(
        "--vector-index",
        choices=("auto", "exact", "pq", "ivf"),
        help="FAISS index kind (default: as last time, first time auto: exact below 50k videos, pq above)",
    )
    p.add_argument("--retry-failed", action="store_true", help="try undecodable videos again")
    p.add_argument("--threads", type=threads_arg, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--decode-workers", type=threads_arg, default=1,
                   help="local engine: threads that decode and prepare the next videos while the model runs "
                        "(default 1; more where decoding is slower than the model and cores are free)")
    add_runtime_args(p, calibration="the first N videos of VIDEO_DIR")
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
        report = _from_shards(args) if args.from_shards else _index(args)
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
        print(f"shard {i}/{n} done; when all {n} are done: vop index --from-shards {shown(args.out)}/embeddings "
              f"--out {shown(args.out)}")
    return 0


def _from_shards(args):
    from dataclasses import replace
    from pathlib import Path

    from vop.index.from_shards import build_from_shards, check_complete
    from vop.index.shards import part_files, read_manifest_beside
    from vop.index.vectors import parse_bytes

    budget = parse_bytes(args.memory_budget)
    check_complete(args.from_shards)
    manifest = read_manifest_beside(args.from_shards)
    if manifest is None and not part_files(args.from_shards):
        raise FileNotFoundError(f"{args.from_shards}: no Parquet shards (*.parquet) and no _manifest.json there")
    if manifest is None:
        manifest = _manifest_from_args(args)
    elif args.backbone or args.adapter:
        from vop.index.manifest import check_same_model

        check_same_model(manifest, _manifest_from_args(args, manifest.root), "--backbone/--adapter")
    if args.video_dir:
        from vop.index.uri import local_path

        local = local_path(args.video_dir)
        manifest = replace(manifest, root=str(local.resolve()) if local is not None else args.video_dir)
    return build_from_shards(args.from_shards, Path(args.out), replace(manifest, shard=None),
                             vector_index=args.vector_index, memory_budget=budget)


def _manifest_from_args(args, root: str | None = None):
    """The embedding space of shards without a manifest: the one --backbone/--adapter encode into."""
    from vop import __version__
    from vop.backbone.reference import resolve_backbone
    from vop.index.encoder import VideoEncoder
    from vop.index.manifest import Manifest

    root = root or args.video_dir
    if not root:
        raise ValueError(f"{args.from_shards} has no _manifest.json: give VIDEO_DIR (the collection root the "
                         f"shard paths are relative to) and --backbone/--adapter (what encoded the vectors)")
    recorded, where = _recorded_backbone(args)
    clip = resolve_backbone(recorded, args.backbone, config=args.config, recorded_in=where,
                            need=f"{args.from_shards} has no _manifest.json: --backbone is required (the CLIP "
                                 f"weights the vectors were encoded with)")
    encoder = VideoEncoder.from_clip(clip, args.adapter, frames=args.frames)
    return Manifest(root=str(root), vop_version=__version__, **encoder.identity())


def _frames(args) -> int | None:
    """``--frames``; else, without an adapter, the frames of the index at --out (a re-run keeps
    them, as it keeps the backbone); else None (the adapter's, or the zero-shot default)."""
    from pathlib import Path

    from vop.index.manifest import MANIFEST_NAME, read_manifest

    if args.frames is not None or args.adapter or not (Path(args.out) / MANIFEST_NAME).is_file():
        return args.frames
    return read_manifest(args.out).frames


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
        raise ValueError("VIDEO_DIR is required (or --from-shards DIR to build from shards)")
    from vop.index.vectors import parse_bytes

    budget = parse_bytes(args.memory_budget)
    shard = _shard(args)
    if args.engine == "ray" and shard is not None:
        raise ValueError("--engine ray spreads the work itself: use it without --shard/torchrun")
    if args.threads:
        torch.set_num_threads(args.threads)
    runtime, precision = runtime_choice(args)
    recorded, where = _recorded_backbone(args)
    clip = resolve_backbone(recorded, args.backbone, config=args.config, recorded_in=where,
                            need="--backbone is required (the CLIP weights to encode the videos with)")
    cache = None
    if args.cache:
        from vop.data.cache import FrameCache

        cache = FrameCache(args.cache)
    encoder = VideoEncoder.from_clip(clip, args.adapter, frames=_frames(args), precision=precision, cache=cache,
                                     runtime=runtime, calibrate_on=args.video_dir,
                                     calibration_videos=args.calibration_videos)
    if not args.quiet and not args.json:
        calibrated = f", calibrated on the {encoder.calibration.source}" if encoder.calibration else ""
        print(f"encoding with {encoder.runtime} at {encoder.precision}{calibrated}", file=sys.stderr)
    return build_index(
        args.video_dir,
        args.out,
        encoder,
        shard=shard,
        progress=not args.quiet,
        retry_failed=args.retry_failed,
        vector_index=args.vector_index,
        engine=args.engine,
        memory_budget=budget,
        decode_workers=args.decode_workers,
        ray_options={"address": args.address, "workers": args.workers, "gpus_per_worker": args.gpus_per_worker,
                     "threads": args.threads},
    )
