"""How a file's name is shown as text: one rule for log lines, reports, the cache and label_image.py.

A name on disk is bytes (Linux allows any but ``/`` and NUL), and a name that
is not UTF-8 (Latin-1 ``caf\\xe9.jpg``, say) reaches Python as surrogate
escapes that no UTF-8 writer accepts.  ``utf8_text`` writes such bytes as
``\\xNN``; ``one_line`` also escapes line breaks, tabs and control characters,
for formats where a name must stay on one line.
"""
from __future__ import annotations

import os

_LINE_BREAKING = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\x85": "\\x85", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def utf8_text(path) -> str:
    """The path as valid UTF-8 text: bytes of a name that are not UTF-8 are written as ``\\xNN``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def one_line(path) -> str:
    """``utf8_text``, with line breaks, tabs and other control characters written as escapes (``\\n``, ``\\x1b``)."""
    return "".join(_LINE_BREAKING.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x20 or ord(c) == 0x7F else c)
                   for c in utf8_text(path))
