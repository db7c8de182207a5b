"""Keep repeated warnings to a bounded number of log lines.

A folder of a thousand small classes, or of ten thousand unreadable files, would otherwise print
one line each and bury everything else; the first few are shown, then one line counts the rest.
(summary.json keeps the full list where one exists, e.g. every skipped image.)
"""
from __future__ import annotations

SHOWN = 10  # lines of one kind shown before the rest are counted


def bounded(lines: list[str], what: str, shown: int = SHOWN) -> list[str]:
    """``lines`` as they are when few; otherwise the first ``shown`` and one line counting the rest."""
    if len(lines) <= shown + 1:
        return list(lines)
    return [*lines[:shown], f"... and {len(lines) - shown} more {what}."]
