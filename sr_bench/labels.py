"""Labels (the names of result columns) and how they are written into each output format.

A label is whatever the user called a result set, so it reaches markdown tables, CSV files and
file names. It is checked once where it is made (``check_label``: no control characters) and
escaped for each format where it is written: :func:`markdown` for table cells and headings,
:func:`csv_text` for CSV cells a spreadsheet may open, :func:`slug` for file names.
"""

from __future__ import annotations

import hashlib
import re

from sr_bench.errors import UsageError

__all__ = ["check_label", "code", "csv_text", "label_problem", "markdown", "slug"]

#: refused in a label: control characters (C0, DEL, C1: newline, tab, escape sequences), line and
#: paragraph separators (they break a markdown row or a CSV line), bidirectional overrides and
#: isolates (they reorder what a reader sees around them), and lone surrogates (bytes of a
#: command line that were not UTF-8: no file can hold them as text)
_INVISIBLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\u200e\u200f\ud800-\udfff]")
#: a CSV cell starting with one of these is run as a formula by spreadsheets (OWASP CSV injection)
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
SLUG_MAX = 60


def label_problem(label: str) -> str | None:
    """Why ``label`` cannot be a label, or None."""
    if not label.strip():
        return "is empty"
    found = _INVISIBLE.search(label)
    if found is None:
        return None
    if 0xD800 <= ord(found.group()) <= 0xDFFF:
        return f"is not UTF-8 text (a byte that is not UTF-8 at position {found.start()}: the terminal's encoding?)"
    return f"has the control character U+{ord(found.group()):04X} at position {found.start()}"


def check_label(label: str, option: str = "--label") -> str:
    """``label``, or a one-line :class:`sr_bench.errors.UsageError` saying what is wrong with it."""
    problem = label_problem(label)
    if problem is not None:
        raise UsageError(f"{option} {label!r} {problem}; labels name a table column: use printable characters "
                         f"(spaces, punctuation and any script are fine)")
    return label


def markdown(text: str) -> str:
    """``text`` as literal text in a markdown table cell or heading: what would end the cell
    (``|``), open HTML (``<``) or escape the next character (``\\``) is escaped, and control
    characters are shown as ``\\uXXXX`` (a label from an old or foreign record may hold one; new
    labels cannot). Emphasis characters are left alone: they cannot break a table."""
    out = text.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;")
    return _INVISIBLE.sub(lambda m: f"\\u{ord(m.group()):04x}", out)


def code(text: str) -> str:
    """``text`` as an inline code span in a table cell (paths): a backtick or control character
    in it falls back to escaped plain text."""
    if "`" in text or _INVISIBLE.search(text):
        return markdown(text)
    return "`" + text.replace("|", "\\|") + "`"


def csv_text(value: str) -> str:
    """A text cell for a CSV a spreadsheet may open: a leading ``=`` ``+`` ``-`` ``@`` tab or CR
    gets a ``'`` in front, so the cell is shown as text instead of being run as a formula."""
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def slug(label: str, max_len: int = SLUG_MAX) -> str:
    """A file-name-safe form of ``label``, at most ``max_len`` characters: a long label is cut and
    ends in a hash of the whole, so two long labels never share a file."""
    text = re.sub(r"[^A-Za-z0-9._+-]+", "_", label).strip("_.") or "label"
    if len(text) <= max_len:
        return text
    digest = hashlib.sha256(label.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{text[:max_len - 11].rstrip('_.')}-{digest}"
