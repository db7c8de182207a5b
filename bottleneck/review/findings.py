"""What the last run found, read from its report folder: one finding per card of the review page.

A finding is a suspected label error (from ``suspected_label_errors.csv``), a
duplicate or leakage pair (``duplicates.csv``), or a misclassified validation
or test image (the run's predictions in ``run_images.jsonl``); an image that
is a suspected label error gets no second card for being misclassified.  Each
image is the run's record of it (``record.py``), so its file is found under
--image_dir by its class folder and name, never by a path from elsewhere, and
a file whose content changed since the run can be told.  Images that a review
kept as labelled, and pairs kept as they are, are not found again.
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..data.names import one_line, utf8_text
from ..data_checks.findings import DUPLICATES_CSV, LABEL_ERRORS_CSV
from ..errors import UserError
from ..report.summary import SUMMARY_FILE
from . import journal
from .record import RECORD_FILE, RecordedImage, read_record

KINDS = ("label_error", "duplicate", "misclassified")


@dataclass
class Finding:
    id: int
    kind: str  # one of KINDS
    images: list[RecordedImage]  # one, or the two of a pair
    suggested: str | None = None  # the label the run would give (label errors, misclassified images)
    detail: dict = field(default_factory=dict)  # what the card shows: probabilities, similarity, sets


@dataclass
class LastRun:
    report_dir: Path
    created: str
    labels: list[str]
    folder_of: dict[str, str]  # label -> class folder, as the run saw them
    findings: list[Finding]
    images: dict[str, RecordedImage]  # every image of the run, by its path in the report


def read_last_run(report_dir, image_dir) -> LastRun:
    """The findings of the run whose report is in ``report_dir``, over ``image_dir``; kept ones left out."""
    report_dir = Path(report_dir)
    if not (report_dir / SUMMARY_FILE).is_file():
        raise UserError(f"No finished report in '{one_line(report_dir)}': run retrain.py first, or give the "
                        "--report_dir (or --output_graph) of the run to review.")
    try:
        summary = json.loads((report_dir / SUMMARY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"'{one_line(report_dir / SUMMARY_FILE)}' cannot be read: {exc}.") from None
    if (summary.get("settings") or {}).get("labels_csv"):
        raise UserError(f"The run reported in '{one_line(report_dir)}' took its labels from --labels_csv; the review "
                        "moves images between class folders, so it reviews runs over class folders.")
    record = read_record(report_dir)
    if record is None:
        raise UserError(f"'{one_line(report_dir)}' has no record of the run's images ({RECORD_FILE}); run "
                        "retrain.py again with this version.")
    if os.path.realpath(record.image_dir) != os.path.realpath(image_dir):
        raise UserError(f"The run reported in '{one_line(report_dir)}' was over '{one_line(record.image_dir)}', "
                        f"not '{one_line(image_dir)}'; give that --image_dir, or the report of a run over this one.")
    images = record.by_path()
    # A name that is not UTF-8 is held as surrogates in the record; the CSV files may write it as escapes.
    images.update({text(im.path): im for im in record.images for text in (utf8_text, one_line)
                   if text(im.path) not in images})
    changes = journal.read_changes(image_dir)
    kept, kept_pairs = journal.kept_as_labelled(changes), journal.kept_pairs(changes)
    found: list[Finding] = []
    disputed = set()
    if summary.get("data_checks"):
        for row in _rows(report_dir / LABEL_ERRORS_CSV):
            image = images.get(row.get("path"))
            if image is None or (image.digest, image.label) in kept:
                continue
            disputed.add(image.path)
            found.append(Finding(len(found), "label_error", [image], row.get("suggested"),
                                 {"label_probability": _number(row.get("label_probability")),
                                  "suggested_probability": _number(row.get("suggested_probability"))}))
        for row in _rows(report_dir / DUPLICATES_CSV):
            a, b = images.get(row.get("path_a")), images.get(row.get("path_b"))
            if a is None or b is None or frozenset((a.digest, b.digest)) in kept_pairs:
                continue
            found.append(Finding(len(found), "duplicate", [a, b], None,
                                 {"duplicate": row.get("kind"), "similarity": _number(row.get("similarity"))}))
    for image in record.images:
        if (image.predicted and image.predicted != image.label and image.path not in disputed
                and (image.digest, image.label) not in kept):
            found.append(Finding(len(found), "misclassified", [image], image.predicted))
    return LastRun(report_dir, record.created, record.labels, record.folder_of(), found, images)


def _rows(path: Path) -> list[dict]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"'{one_line(path)}' cannot be read: {exc}.") from None


def _number(text) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None
