"""``vop serve``: HTTP API + web page over one or more indexes, one backbone in memory.

Examples::

    vop serve ~/videos.vop                                   # http://127.0.0.1:8000
    vop serve msrvtt=IDX1 didemo=IDX2 --adapters msrvtt=runs/a/adapter didemo=runs/b/adapter

Each index is searched only with the adapter it was built with (sha256 in its manifest);
``--adapters NAME=DIR`` names adapters and says where they are if they moved.
"""

from __future__ import annotations

import argparse

from vop.cli.args import port_arg, threads_arg
from vop.cli.messages import error, log_to_stderr, plain, shown, warning
from vop.cli.runtime_args import add_runtime_args

USER_ERRORS = (OSError, ValueError, KeyError)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve indexes over HTTP with a search page",
        description=plain(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("indexes", nargs="+", metavar="INDEX", help="index folder, or NAME=INDEX")
    p.add_argument("--adapters", nargs="*", default=[], metavar="NAME=DIR", help="adapter folders by name")
    p.add_argument("--backbone", help="backbone weights, if moved since indexing (hash-checked)")
    p.add_argument("--root", action="append", default=[], metavar="[NAME=]DIR",
                   help="folder whose videos an index serves (default: the folder it recorded, while that is "
                        "a folder other than /); NAME=DIR when several indexes are served")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=port_arg, default=8000)
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="a Host header name to accept besides loopback and --host (repeatable; e.g. a DNS name)")
    p.add_argument("--threads", type=threads_arg, help="torch CPU threads for query encoding")
    add_runtime_args(p)  # the query encoder's, for an index of any (docs/cpu-runtimes.md)
    p.set_defaults(func=run)


def run(args) -> int:
    import torch
    from uvicorn import Server

    from vop.cli.runtime_args import runtime_choice
    from vop.serve.app import create_app
    from vop.serve.server import server_config
    from vop.serve.service import load_service

    log_to_stderr()  # uvicorn's records too: one escaped line each
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        runtime, precision = runtime_choice(args)
        service = load_service(args.indexes, args.adapters, args.backbone, precision=precision, roots=args.root,
                               runtime=runtime)
    except USER_ERRORS as err:
        return error("serve", err)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        warning("serve", f"binding {args.host}: anyone who can reach it can search and play the indexed videos")
    for c in service.collections.values():
        if c.searcher.served_root is None:
            warning("serve", f"{c.name}: its videos are not played ({c.searcher.no_files_because}); "
                             f"pass --root DIR")
    names = ", ".join(f"{c.name} ({len(c.searcher)} videos, {c.searcher.manifest.precision} index, "
                      f"{c.searcher.encoder.runtime} {c.searcher.encoder.precision} queries, files from {c.searcher.served_root or 'nowhere'})"
                      for c in service.collections.values())
    print(f"serving {shown(names)} on http://{args.host}:{args.port}/", flush=True)
    try:
        app = create_app(service, hosts=[args.host, *args.allow_host])
        Server(server_config(app, args.host, args.port)).run()
    finally:
        service.close()
    return 0
