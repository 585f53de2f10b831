"""What every command prints to a person: one error format and plain-text help.

Errors a user can cause are one line on stderr, ``vop COMMAND: error: REASON`` (argparse's own
format), and exit status 2; warnings are ``vop COMMAND: warning: ...``. Help texts come from the
modules' reStructuredText docstrings, shown as plain text.

Text that comes from files or clients (file names, captions, error reasons read from a file) is
printed only through :func:`shown`: a file named ``"a\nvop search: ..."`` or holding an escape
sequence must not fake a line or drive the terminal. ``error`` / ``warning`` / :func:`log_to_stderr`
apply it themselves.
"""

from __future__ import annotations

import logging
import re
import sys
import unicodedata

USAGE_ERROR = 2
# bidirectional overrides/isolates and marks, line/paragraph separators: they reorder or break what is shown
_INVISIBLE = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# torch's advice on refusing a pickle: vop never loads code, so it must never suggest it
_TORCH_SAYS = re.compile(r"Weights only load failed|weights_only\W+(set to\W+)?False|safe_globals|can still be loaded",
                         re.IGNORECASE)
_TORCH_ADVICE = re.compile(r"weights_only|safe_globals|trust|can still be loaded|arbitrary code|torch\.load\b|"
                           r"^\(\d\)", re.IGNORECASE)


def _escape(ch: str) -> str:
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def shown(text: object) -> str:
    """``text`` safe to print on one terminal line: control characters (C0, DEL, C1: newlines, CR,
    ESC ...), bidirectional overrides, line separators and lone surrogates written as ``\\n`` /
    ``\\xNN`` / ``\\uNNNN``; torch's advice to load with ``weights_only=False`` dropped."""
    text = no_torch_advice(str(text))
    return "".join(
        _escape(ch) if ch in _INVISIBLE or unicodedata.category(ch) in ("Cc", "Cs") else ch for ch in text
    )


def no_torch_advice(text: str) -> str:
    """``text`` without the sentences in which torch advises turning off weights-only loading."""
    if not _TORCH_SAYS.search(text):
        return text
    kept = [s for s in re.split(r"(?<=[.;!?])\s+|\n+", text) if s.strip() and not _TORCH_ADVICE.search(s.strip())]
    out = " ".join(kept).strip() or "torch refused to read the file"
    return out + ")" * max(0, out.count("(") - out.count(")"))


def error(command: str, reason: object) -> int:
    """Print ``vop COMMAND: error: REASON`` on stderr (REASON :func:`shown`); returns the exit status (2)."""
    print(f"vop {command}: error: {shown(reason)}", file=sys.stderr, flush=True)
    return USAGE_ERROR


def warning(command: str, message: object) -> None:
    print(f"vop {command}: warning: {shown(message)}", file=sys.stderr, flush=True)


class _ShownFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return shown(super().format(record))


def log_to_stderr(level: int = logging.WARNING) -> None:
    """Route the library's log records (e.g. ``vop.index`` skipping a file) to stderr, one
    :func:`shown` line each (``LEVEL logger: message``)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_ShownFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])


def plain(doc: str | None) -> str:
    """A docstring as ``--help`` text: no double backticks, ``Examples::`` -> ``Examples:``."""
    text = re.sub(r"``(.+?)``", r"\1", doc or "")
    return re.sub(r"::$", ":", text, flags=re.MULTILINE)
