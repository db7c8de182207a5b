"""The review journal, ``<image_dir>/.retrain-review.jsonl``: every change made to the images, one JSON line each.

A line says when, which file (its name relative to its class folder), from where
to where (paths relative to --image_dir), its content digest and the label it
had, and which session made it.  Actions are ``move``, ``exclude`` (a move into
``.excluded/<class>/``), ``keep`` (no move: the image is right as labelled) and
``undo`` (which names the line it takes back).  Lines are only ever appended, so
the journal is the history; what holds now is the journal replayed.  The walk
ignores the file, as it ignores every hidden name.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import os
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..data.names import one_line
from ..errors import UserError

JOURNAL_FILE = ".retrain-review.jsonl"
EXCLUDED_FOLDER = ".excluded"
ACTIONS = ("move", "exclude", "keep", "undo")


@dataclass(frozen=True)
class Change:
    action: str  # one of ACTIONS
    file: str  # the name relative to its class folder (what the split hashes)
    source: str  # "from": where it was, relative to --image_dir
    target: str  # "to": where it is now (a keep: where it stays)
    digest: str  # its content
    label: str  # its label before the change (a keep: the label kept)
    session: str = ""
    id: str = field(default_factory=lambda: secrets.token_hex(6))
    time: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    pair: str | None = None  # a keep of a duplicate pair: the other image's digest
    undoes: str | None = None  # an undo: the id of the line it takes back

    def to_json(self) -> str:
        fields = {"from" if k == "source" else "to" if k == "target" else k: v for k, v in asdict(self).items()}
        ordered = {k: fields[k] for k in ("time", "action", "file", "from", "to", "digest", "label", "session", "id",
                                          "pair", "undoes") if fields[k] is not None}
        # ensure_ascii: a name that is not UTF-8 (held as surrogates) is written as \udcNN and read back the same.
        return json.dumps(ordered, ensure_ascii=True)

    @classmethod
    def from_json(cls, line: str) -> Change:
        fields = json.loads(line)
        fields["source"], fields["target"] = fields.pop("from"), fields.pop("to")
        return cls(**fields)


def new_session() -> str:
    """A session's id: its start time and a few random characters, so that ids sort by time."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)


def journal_path(image_dir) -> Path:
    return Path(image_dir) / JOURNAL_FILE


def read_changes(image_dir) -> list[Change]:
    """Every line of the journal, oldest first (none when there is no journal yet)."""
    path = journal_path(image_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"The review journal '{one_line(path)}' cannot be read: {exc}.") from None
    changes = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                changes.append(Change.from_json(line))
            except (ValueError, TypeError, KeyError):
                raise UserError(f"Line {number} of the review journal '{one_line(path)}' is not a change this "
                                "version knows; mend or move that line.") from None
    return changes


def append(image_dir, change: Change) -> None:
    """Add one line and flush it to disk before returning, so a change on disk is never left unrecorded."""
    fd = os.open(journal_path(image_dir), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (change.to_json() + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def locked(image_dir):
    """Hold the journal's lock: one change at a time, from any process (the page and relabel, say)."""
    fd = os.open(journal_path(image_dir), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def live(changes: list[Change]) -> list[Change]:
    """The changes that still hold: every move, exclude and keep that no undo has taken back, oldest first."""
    undone = {c.undoes for c in changes if c.action == "undo"}
    return [c for c in changes if c.action != "undo" and c.id not in undone]


def kept_as_labelled(changes: list[Change]) -> set[tuple[str, str]]:
    """(content digest, label) of every image kept as labelled: not to be suggested again while both hold."""
    return {(c.digest, c.label) for c in live(changes) if c.action == "keep" and c.pair is None}


def kept_pairs(changes: list[Change]) -> set[frozenset[str]]:
    """The duplicate pairs, by their two digests, that a review kept as they are."""
    return {frozenset((c.digest, c.pair)) for c in live(changes) if c.action == "keep" and c.pair is not None}
