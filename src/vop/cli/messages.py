"""What every command prints to a person: one error format and plain-text help.

Errors a user can cause are one line on stderr, ``vop COMMAND: error: REASON`` (argparse's own
format), and exit status 2; warnings are ``vop COMMAND: warning: ...``. Help texts come from the
modules' reStructuredText docstrings, shown as plain text.
"""

from __future__ import annotations

import re
import sys

USAGE_ERROR = 2


def error(command: str, reason: object) -> int:
    """Print ``vop COMMAND: error: REASON`` on stderr; returns the exit status (2)."""
    print(f"vop {command}: error: {reason}", file=sys.stderr, flush=True)
    return USAGE_ERROR


def warning(command: str, message: object) -> None:
    print(f"vop {command}: warning: {message}", file=sys.stderr, flush=True)


def plain(doc: str | None) -> str:
    """A docstring as ``--help`` text: no double backticks, ``Examples::`` -> ``Examples:``."""
    text = re.sub(r"``(.+?)``", r"\1", doc or "")
    return re.sub(r"::$", ":", text, flags=re.MULTILINE)
