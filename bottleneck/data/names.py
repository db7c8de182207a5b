"""How a file's name leaves the process: one rule for logs, the terminal and every machine format.

* **Carried** as the bytes the file system gave.  A name on disk is bytes
  (Linux allows any but ``/`` and NUL); Python holds it as text in which bytes
  that are not UTF-8 (Latin-1 ``caf\\xe9.jpg``, say) are surrogate escapes,
  and ``os.fsencode`` gives the very bytes back.  Where a name crosses into a
  format that takes only valid UTF-8 (Beam's coders), it travels as those bytes.
* **Shown** (log lines, the terminal, error messages): ``one_line``: bytes that
  are not UTF-8 as ``\\xNN``, and line breaks, tabs and control characters as
  escapes, so a name never breaks a line.  For people only: not reversible.
* **Written** (CSV, JSON, summary.json, Beam's records): ``name_fields``.  A
  name that is valid UTF-8 is written exactly, tabs, line breaks and U+2028
  included, since CSV quoting and JSON strings carry every character.  A name
  that is not UTF-8 cannot be text: its text field shows it as ``utf8_text``
  does (``\\xNN``), and a field beside it, ``<field>_bytes``, holds the name's
  bytes in hex, from which ``from_fields`` (or ``bytes.fromhex``) gives the
  file back.  JSON objects have that field only for such names; CSV files
  always have its column, empty for UTF-8 names; a JSON list of names gets a
  list ``<field>_bytes`` beside it (hex, or empty for each UTF-8 name) when
  any of them is not UTF-8.
"""
from __future__ import annotations

import os

BYTES_SUFFIX = "_bytes"  # the field beside a name that holds its bytes, in hex, when they are not UTF-8

_LINE_BREAKING = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\x85": "\\x85", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def utf8_text(path) -> str:
    """The path as valid UTF-8 text: bytes of a name that are not UTF-8 are written as ``\\xNN``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def one_line(path) -> str:
    """``utf8_text``, with line breaks, tabs and other control characters written as escapes (``\\n``, ``\\x1b``)."""
    return "".join(_LINE_BREAKING.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x20 or ord(c) == 0x7F else c)
                   for c in utf8_text(path))


def is_utf8(path) -> bool:
    """Whether the name's bytes are valid UTF-8, so that text carries it exactly."""
    try:
        os.fsencode(path).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def name_bytes(path) -> str:
    """The name's bytes in hex where they are not UTF-8; empty for a name that text carries exactly."""
    return "" if is_utf8(path) else os.fsencode(path).hex()


def name_fields(path, field: str = "path") -> dict[str, str]:
    """A name as fields of a JSON object: ``{field: text}``, plus ``field_bytes`` (hex) for a name not UTF-8."""
    fields = {field: utf8_text(path)}
    if not is_utf8(path):
        fields[field + BYTES_SUFFIX] = name_bytes(path)
    return fields


def names_fields(paths, field: str) -> dict[str, list[str]]:
    """A list of names as JSON fields: ``{field: texts}``, plus ``field_bytes`` (one hex or "" each) if needed."""
    fields = {field: [utf8_text(path) for path in paths]}
    if not all(is_utf8(path) for path in paths):
        fields[field + BYTES_SUFFIX] = [name_bytes(path) for path in paths]
    return fields


def name_cells(path) -> list[str]:
    """A name as its two CSV cells: the text, and its bytes in hex (empty for a UTF-8 name)."""
    return [utf8_text(path), name_bytes(path)]


def from_fields(text: str, hex_bytes: str | None = None) -> str:
    """The name as the process carries it, back from what name_fields or name_cells wrote."""
    return os.fsdecode(bytes.fromhex(hex_bytes)) if hex_bytes else text
