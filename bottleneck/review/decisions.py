"""Decisions from a CSV file: the review without a browser, for a spreadsheet or a script.

The file has the columns of the report's ``suspected_label_errors.csv`` (only
``path`` and ``suggested`` are read) plus ``action``: ``move`` (to the class in
``suggested``, which may be edited to any class, or a new one), ``exclude`` or
``keep``; a row with no action is passed over.  A row names an image of the
last run by its path as the report wrote it (or relative to --image_dir), and
is applied with the page's rules and journal (``session.py``); a row that is
refused leaves its image as it was and the others still apply.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from ..data.names import one_line
from ..errors import UserError
from .moves import Refused
from .record import RecordedImage
from .session import Review

ACTIONS = ("move", "exclude", "keep")


@dataclass
class Outcome:
    row: int  # 1 for the first row below the header
    path: str
    done: str | None  # what changed, or None when refused
    refused: str | None = None


def read_decisions(csv_path) -> list[dict]:
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            columns = set(reader.fieldnames or ())
    except FileNotFoundError:
        raise UserError(f"Decisions file '{one_line(csv_path)}' not found.") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"Decisions file '{one_line(csv_path)}' cannot be read: {exc}.") from None
    missing = [c for c in ("path", "action") if c not in columns]
    if missing:
        raise UserError(f"Decisions file '{one_line(csv_path)}' lacks the column(s) {', '.join(missing)}: it needs the "
                        "columns of suspected_label_errors.csv plus 'action' (move, exclude or keep).")
    return rows


def apply_decisions(rows: list[dict], review: Review) -> list[Outcome]:
    """Apply every row that has an action, in order; each outcome says what changed or why not."""
    outcomes = []
    by_place = {im.relative: im for im in review.run.images.values()}
    for number, row in enumerate(rows, 1):
        action = (row.get("action") or "").strip().lower()
        path = row.get("path") or ""
        if not action:
            continue
        try:
            if action not in ACTIONS:
                raise Refused(f"unknown action '{one_line(action)}': use move, exclude or keep.")
            image = image_of(path, review, by_place)
            target = (row.get("suggested") or "").strip()
            folder = review.run.folder_of.get(target, target) if action == "move" else None
            change = review.change(image, action, folder)
        except Refused as exc:
            outcomes.append(Outcome(number, path, None, str(exc)))
            continue
        done = (f"kept {one_line(change.source)} as {change.label}" if change.action == "keep"
                else f"{change.action} {one_line(change.source)} -> {one_line(change.target)}")
        outcomes.append(Outcome(number, path, done))
    return outcomes


def image_of(path: str, review: Review, by_place: dict[str, RecordedImage]) -> RecordedImage:
    """The run's image that a row names: by its path in the report, or by its place inside --image_dir."""
    image = review.run.images.get(path)
    if image is not None:
        return image
    root = os.path.abspath(review.folder.root)
    candidate = os.path.abspath(path) if os.path.isabs(path) else os.path.join(root, path)
    relative = os.path.relpath(candidate, root)
    image = by_place.get(Path(relative).as_posix()) if not relative.startswith("..") else None
    if image is None:
        raise Refused(f"{one_line(path)} is not an image of the last run under {one_line(review.folder.root)}; it is "
                      "left alone.")
    return image
