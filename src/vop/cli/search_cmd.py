"""``vop search``: ranked videos of an index for a text query, or for a video (``--like``).

The query is encoded with the backbone and adapter recorded in the index's manifest (their
sha256 is checked); ``--backbone`` / ``--adapter`` point at them if the files have moved.
"""

from __future__ import annotations

import sys

from vop.cli.args import bounded_int, search_param_arg
from vop.cli.messages import error, plain, shown, warning
from vop.cli.runtime_args import add_runtime_args, runtime_choice

MAX_K = 10_000
USER_ERRORS = (OSError, ValueError, KeyError)


def register(subparsers) -> None:
    p = subparsers.add_parser("search", help="search an index by text or by video", description=plain(__doc__))
    p.add_argument("index", help="index folder written by `vop index`")
    p.add_argument("query", nargs="?", help="text query")
    p.add_argument("--like", metavar="VIDEO", help="find videos similar to this one (indexed or not)")
    p.add_argument("-k", type=bounded_int(1, MAX_K), default=10, help="number of results (default 10)")
    p.add_argument("--json", action="store_true", help="print JSON instead of lines")
    p.add_argument("--backbone", help="backbone weights, if moved since indexing (hash-checked)")
    p.add_argument("--adapter", help="adapter folder, if moved since indexing (hash-checked)")
    p.add_argument("--nprobe", type=search_param_arg, help="ivf index: cells to scan (more = slower, better recall)")
    p.add_argument(
        "--k-factor",
        type=search_param_arg,
        help="pq index: candidates re-ranked per result (more = slower, better recall)",
    )
    add_runtime_args(p)  # the query encoder's; any works with any index (docs/cpu-runtimes.md)
    p.set_defaults(func=run)


def run(args) -> int:
    import json

    from vop.data.decode import DecodeError

    try:
        query, hits, root, precision = _search(args)
    except (*USER_ERRORS, DecodeError) as err:
        return error("search", err)
    rows = [dict(rank=r, **h.to_dict(), file=str(root / h.path)) for r, h in enumerate(hits, 1)]
    if args.json:
        runtime = precision.pop("runtime")
        print(json.dumps({"query": query, "k": args.k, "precision": precision, "runtime": runtime, "results": rows},
                         indent=2))
        return 0
    runtime = precision.pop("runtime")
    print(f"precision: query {precision['query']}, index {precision['index']} "
          f"(runtime: query {runtime['query']}, index {runtime['index']})", file=sys.stderr)
    for row in rows:
        print(f"{row['rank']:>3}  {row['score']:.4f}  {shown(row['file'])}")
    if not rows:
        warning("search", "no results (empty index?)")
    return 0


def _search(args):
    from vop.index.search import Searcher, encoder_for_index

    if (args.query is None) == (args.like is None):
        raise ValueError("give a text query or --like VIDEO (exactly one)")
    if not 1 <= args.k <= MAX_K:
        raise ValueError(f"-k must be in 1..{MAX_K}")
    # one query: splitting the index over threads or asking for huge pages would not pay off
    searcher = Searcher(args.index, search_threads=1, huge_pages=False)
    searcher.vectors.set_params(nprobe=args.nprobe, k_factor=args.k_factor)
    if args.like is None or searcher.indexed_id(args.like) is None:  # an indexed --like needs no model
        runtime, precision = runtime_choice(args)
        searcher.set_encoder(encoder_for_index(searcher.manifest, args.backbone, args.adapter, precision=precision,
                                               index_dir=args.index, runtime=runtime))
    enc = searcher.encoder
    precision = {"query": enc.precision if enc else "stored vector", "index": searcher.manifest.precision,
                 "runtime": {"query": enc.runtime if enc else None, "index": searcher.manifest.runtime}}
    if args.like is not None:
        return {"like": args.like}, searcher.search_like(args.like, args.k), searcher.root, precision
    return args.query, searcher.search_text(args.query, args.k), searcher.root, precision
