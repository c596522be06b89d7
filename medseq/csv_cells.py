"""CSV that spreadsheets open as data: cells that would start a formula are escaped.

Excel, LibreOffice and Google Sheets run a cell that begins with ``=``, ``+``, ``-`` or ``@``
(also after a tab or carriage return) as a formula, so a patient id such as ``=1+2`` or
``@SUM(1)`` kept with ``--keep-ids`` could compute, or worse, when ``lesions.csv`` is opened.
As OWASP recommends (CSV Injection), every CSV medseq writes prefixes such a text cell with a
single quote, which spreadsheets show as text. Numbers (``-12.5``) are numbers, not formulas,
and stay as they are. medseq's own readers of patient ids (``--labels``, ``--lesion-info``)
drop that quote again, so its outputs can be fed back.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from typing import Any

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
"""What makes a spreadsheet read a cell as a formula (OWASP's list)."""
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def safe_cell(value: Any) -> Any:
    """``value``, with ``'`` in front when it is text a spreadsheet would run as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_START) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def unescape_cell(text: str) -> str:
    """Undo :func:`safe_cell` on a cell read back from a CSV medseq wrote."""
    if text.startswith("'") and text[1:].startswith(FORMULA_START):
        return text[1:]
    return text


def csv_text(rows: Iterable[Sequence[Any]]) -> str:
    """Rows as CSV text (``\\n`` line ends), every cell passed through :func:`safe_cell`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerows([safe_cell(value) for value in row] for row in rows)
    return buffer.getvalue()
