"""``vop data check``: validate a dataset's annotation files (and, optionally, its videos).

Examples::

    vop data check msrvtt --annotations data/msrvtt
    vop data check msvd --annotations data/msvd --videos data/msvd/videos --probe --json

Prints records per split, captions per record, missing video files and every problem found
(a missing file, a malformed line named by file and line number). Exit status 0 when no
problem was found, 1 when some were, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json

from vop.cli.messages import error, plain, shown


def register(subparsers) -> None:
    p = subparsers.add_parser("data", help="inspect datasets (vop data check)", description=plain(__doc__),
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    c = sub.add_parser("check", help="validate annotations and videos", description=plain(__doc__),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataset_args(c, videos_required=False)
    c.add_argument("--probe", action="store_true",
                   help="also decode every found video to its last frame and report undecodable ones (slow)")
    c.add_argument("--json", action="store_true", help="print the report as JSON")
    c.set_defaults(func=run)


def add_dataset_args(p, videos_required: bool) -> None:
    p.add_argument("dataset", help="msrvtt, msvd, didemo, activitynet, lsmdc, csv or jsonl")
    p.add_argument("--annotations", required=True, metavar="PATH", help="annotation folder (or file for csv/jsonl)")
    p.add_argument("--videos", required=videos_required, metavar="DIR", help="folder holding the video files")
    p.add_argument("--split", action="append", dest="splits", metavar="SPLIT",
                   help="split to check (repeatable; default: every split of the dataset)")


def probe_videos(report: dict, dataset: str, annotations, videos, splits) -> None:
    """Add ``videos_corrupt`` per split: found files that do not decode to their last frame
    (a truncated file opens fine and fails only there, like ``corrupted.mp4``)."""
    from vop.data.annotations import load_records
    from vop.data.decode import DecodeError, count_frames, read_frames

    verdicts: dict[str, str | None] = {}
    for split, entry in report["splits"].items():
        if not entry.get("ok"):
            continue
        bad = []
        for record in load_records(dataset, annotations, split, videos):
            if record.path is None:
                continue
            if record.video_id not in verdicts:
                try:
                    read_frames(record.path, [count_frames(record.path) - 1], short_side=32)
                    verdicts[record.video_id] = None
                except DecodeError as err:
                    verdicts[record.video_id] = err.reason
            if verdicts[record.video_id] is not None:
                bad.append(record.video_id)
        entry["videos_corrupt"] = len(bad)
        if bad:
            report["problems"].append(f"{split}: {len(bad)} videos cannot be decoded, e.g. "
                                      f"{bad[0]!r}: {verdicts[bad[0]]}")


def format_report(report: dict) -> str:
    lines = [f"dataset {report['dataset']}  annotations {report['annotations']}"
             + (f"  videos {report['videos']}" if report["videos"] else "")]
    for split, entry in report["splits"].items():
        if not entry.get("ok"):
            lines.append(f"  {split:<16} unreadable")
            continue
        caps = entry["captions"]
        text = (f"  {split:<16} {entry['records']:>7,} records  {caps['total']:>8,} captions "
                f"({caps['per_record_min']}-{caps['per_record_max']} per record, mean {caps['per_record_mean']}; "
                f"{caps['words_mean']} words each)")
        if "videos_missing" in entry:
            text += f"  videos found {entry['videos_found']:,}, missing {entry['videos_missing']:,}"
        if "videos_corrupt" in entry:
            text += f", undecodable {entry['videos_corrupt']:,}"
        lines.append(text)
    lines.append(f"problems ({len(report['problems'])}):" if report["problems"] else "no problems found")
    lines += [f"  - {shown(p)}" for p in report["problems"]]
    lines[0] = shown(lines[0])  # folder names
    return "\n".join(lines)


def run(args) -> int:
    from vop.data.annotations import check_dataset

    try:
        report = check_dataset(args.dataset, args.annotations, args.videos, args.splits)
        if args.probe and args.videos:
            probe_videos(report, args.dataset, args.annotations, args.videos, args.splits)
    except (ValueError, FileNotFoundError) as err:
        return error("data check", err)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 1 if report["problems"] else 0
