"""``vop export``: an index's rows as Parquet embedding shards, for LanceDB, Milvus, Spark or autofaiss.

Examples::

    vop export ~/videos.vop ~/videos-parquet --format parquet
    vop export ~/videos.vop s3://bucket/videos-parquet          # any fsspec URI (needs s3fs)
    vop index --from-shards ~/videos-parquet --out ~/copy.vop   # and back into a vop index

The files follow the schema of ``vop index``'s own shards (docs/scaling.md): one row per video
with path, size, mtime_ns, status, error/warning, num_frames, duration, width, height, file_id,
thumbnail (JPEG) and the fp16 vector, plus _manifest.json naming the embedding space.
"""

from __future__ import annotations

import argparse

from vop.cli.messages import error, plain

USER_ERRORS = (OSError, ValueError, KeyError)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export",
        help="write an index's vectors and metadata as Parquet",
        description=plain(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("index", help="index folder written by `vop index`")
    p.add_argument("out", help="folder or fsspec URI to write part-*.parquet + _manifest.json into (empty)")
    p.add_argument("--format", choices=("parquet",), default="parquet",
                   help="output format (default parquet)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    import json

    from vop.index.export import export_index

    try:
        summary = export_index(args.index, args.out)
    except USER_ERRORS as err:
        return error("export", err)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{summary['rows']} rows ({summary['indexed']} with a vector) in {summary['parts']} "
              f"Parquet part(s) under {summary['out']}")
    return 0
