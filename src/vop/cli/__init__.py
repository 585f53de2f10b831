"""The ``vop`` command line: one module per subcommand, each with ``register`` and ``run``.

``register(subparsers)`` must stay cheap (no torch import); heavy imports live in ``run(args)``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand module names under vop.cli, in the order shown by `vop --help`
COMMANDS = ("demo", "train", "eval", "prepare", "data", "index", "search", "serve", "export", "methods",
            "adapter", "env")


class _Parser(argparse.ArgumentParser):
    """argparse, with its error messages (which may quote arguments: a file name a shell glob
    expanded) shown escaped like every other error line (``vop.cli.messages.shown``)."""

    def error(self, message):
        from vop.cli.messages import shown

        super().error(shown(message))


def build_parser() -> argparse.ArgumentParser:
    from vop import __version__

    parser = _Parser(
        prog="vop",
        description="Text-video retrieval with prompt-tuned frozen CLIP (VoP).",
    )
    parser.add_argument("--version", action="version", version=f"vop {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"vop.cli.{name}_cmd").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
