"""``vop eval``: t2v and v2t R@1/5/10, MdR, MnR of an adapter (or zero-shot CLIP) on a split.

Examples::

    vop eval --adapter runs/msrvtt9k-vop/adapter --backbone ViT-B-32.pt \\
             --dataset msrvtt --annotations data/msrvtt --videos data/msrvtt/videos --split test-1ka
    vop eval --method zeroshot --backbone ViT-B-32.pt --dataset msvd ... --dsl --json out.json

DSL (dual softmax) numbers use the statistics of all test queries and are printed separately.
Frames are prepared at the backbone's image size, read from its config (there is no flag for it).
"""

from __future__ import annotations

import argparse

from vop.cli.args import MAX_CHUNK, batch_arg, bounded_int, frames_arg
from vop.cli.messages import error, plain, warning
from vop.cli.runtime_args import add_runtime_args, runtime_choice


def register(subparsers) -> None:
    p = subparsers.add_parser("eval", help="retrieval metrics of an adapter or zero-shot CLIP on a dataset split",
                              description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--adapter", help="adapter folder (adapter.json + adapter.safetensors)")
    what.add_argument("--method", choices=["zeroshot"], help="evaluate plain CLIP")
    p.add_argument("--backbone", help="CLIP weights (file, HF folder or bundled name); "
                                      "default: the backbone recorded in the adapter (sha256-checked)")
    p.add_argument("--frames", type=frames_arg, default=12, help="frames per video for --method zeroshot")
    p.add_argument("--dataset", required=True, help="msrvtt, msvd, didemo, activitynet, lsmdc, csv, jsonl")
    p.add_argument("--annotations", required=True, help="annotation folder or file")
    p.add_argument("--videos", default=None, help="video folder")
    p.add_argument("--split", default=None, help="split to evaluate (default: the dataset's test split)")
    p.add_argument("--cache", default=None, help="frame cache from `vop prepare`")
    p.add_argument("--batch-size", type=batch_arg, default=32)
    p.add_argument("--captions", choices=["all", "first"], default="all",
                   help="all: every caption is a query (MSVD multi-caption protocol); first: one per video")
    p.add_argument("--tie", choices=["pessimistic", "optimistic"], default="pessimistic")
    p.add_argument("--dsl", action="store_true", help="also report dual-softmax re-ranked numbers (separately)")
    p.add_argument("--chunk", type=bounded_int(0, MAX_CHUNK), default=0,
                   help="queries per similarity block (0: from a 64 MB block budget)")
    p.add_argument("--device", default="auto")
    add_runtime_args(p, calibration="the first N videos of --calibration-split")
    p.add_argument("--calibration-split", default="val",
                   help="openvino int8: the split to calibrate on (default val; never the evaluated split)")
    p.add_argument("--on-error", choices=["skip", "raise"], default="skip", help="undecodable videos")
    p.add_argument("--json", default=None, help="write the result as JSON here")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def _load_backbone(args):
    """``--backbone``, else the adapter's recorded backbone, through the one resolver (sha256-checked)."""
    from vop.backbone.reference import resolve_backbone

    if not args.adapter:
        return resolve_backbone(None, args.backbone, need="--method zeroshot needs --backbone "
                                "(CLIP weights: a file, an HF folder or a bundled name)")
    from pathlib import Path

    from vop.adapter import META_FILE, backbone_ref, read_metadata

    return resolve_backbone(backbone_ref(read_metadata(args.adapter)), args.backbone,
                            recorded_in=Path(args.adapter) / META_FILE)


def _calibration(args, runtime: str, precision: str, model, records):
    """OpenVINO int8: the first videos of ``--calibration-split``, which may not be the evaluated split."""
    if runtime != "openvino" or precision != "int8":
        return None
    from vop.data.annotations import load_records
    from vop.runtime.calibration import DEFAULT_VIDEOS, from_records

    evaluated = records[0].split if records else args.split
    if args.calibration_split == evaluated:
        raise ValueError(f"--calibration-split {args.calibration_split} is the split being evaluated; calibrate "
                         "on another (default: val)")
    calib = load_records(args.dataset, args.annotations, args.calibration_split, args.videos)
    return from_records(calib, model.frames, model.clip.cfg.vision.image_size,
                        args.calibration_videos or DEFAULT_VIDEOS, split=args.calibration_split)


def run(args) -> int:
    import json
    from pathlib import Path

    import torch

    from vop.data.annotations import load_records
    from vop.data.decode import DecodeError
    from vop.eval.retrieval import format_table
    from vop.runtime import check, prepare

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    runtime, precision = runtime_choice(args)
    if (runtime == "openvino" or precision == "int8") and args.device == "auto":
        device = "cpu"
    try:
        check(runtime, precision, device)
        clip = _load_backbone(args)
        if args.adapter:
            from vop.adapter import load_adapter

            model = load_adapter(args.adapter, clip)
        else:
            from vop.model import build_model

            model = build_model(clip, "zeroshot", args.frames)
        records = load_records(args.dataset, args.annotations, args.split, args.videos)
        calibration = _calibration(args, runtime, precision, model, records)
        model = prepare(model, runtime, precision, calibration)  # after the adapter is loaded
    except (ValueError, FileNotFoundError, KeyError) as exc:
        return error("eval", exc)
    missing = [r.video_id for r in records if r.path is None]
    if missing:
        warning("eval", f"{len(missing)} of {len(records)} videos not found (e.g. {missing[0]!r}); "
                "they and their captions are left out")
    records = [r for r in records if r.path is not None]
    try:
        result = _evaluate(args, model, records, device)
    except (ValueError, OSError, DecodeError) as exc:  # DecodeError: --on-error raise met a bad video
        return error("eval", exc)
    result.update(dataset=args.dataset, split=records[0].split if records else args.split,
                  method=model.method, adapter=args.adapter, videos_missing=len(missing), precision=precision,
                  runtime=runtime, calibration=calibration.describe() if calibration else None)
    print(format_table(result))
    calibrated = f", calibrated on the {calibration.source}" if calibration else ""
    print(f"runtime: {runtime}, precision: {precision}{calibrated}")
    if args.json:
        try:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        except OSError as exc:
            return error("eval", f"cannot write --json {args.json}: {exc.strerror or exc}")
        print(f"wrote {args.json}")
    return 0


def _evaluate(args, model, records, device) -> dict:
    """``evaluate`` on the found records, from ``--cache`` when given; every video that cannot be
    used (none found, none decodes, a hostile cache file) is a ValueError/OSError/DecodeError."""
    from vop.eval.retrieval import evaluate

    if not records:
        raise ValueError(f"no video of {args.annotations} was found under --videos; nothing to evaluate")
    cache = None
    if args.cache:
        from vop.data.cache import FrameCache

        cache = FrameCache(args.cache)
    return evaluate(model.to(device), records, batch_size=args.batch_size, cache=cache, tie=args.tie,
                    dsl=args.dsl, chunk=args.chunk, captions=args.captions, device=device,
                    on_error=args.on_error, progress=not args.no_progress)  # at the backbone's image size
