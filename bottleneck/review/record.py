"""The run's record of its images, in the report folder: where each one was, its content, its set and prediction.

``run_images.jsonl`` has a first line naming the run (format, time, --image_dir,
labels) and then one line per readable image: its path as the report's CSV files
name it, its class folder and its name relative to that folder, its label, set
and content digest, and for validation and test images the run's prediction.
The review reads it to find the file behind each finding and to refuse a file
whose content changed since the run; the next run reads it to say how many
images changed class (an image keeps its name and content when it moves).
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..atomic import write_text_atomic
from ..data.split import SETS, ClassSplit
from ..data.walk import ImageClass
from ..errors import EXIT_FAILURE, UserError

if TYPE_CHECKING:
    from ..report.page import Predictions

RECORD_FILE = "run_images.jsonl"
RECORD_FORMAT = "bottleneck-run-images/1"

log = logging.getLogger("retrain")


@dataclass(frozen=True)
class RecordedImage:
    path: str  # as the report's CSV files and summary.json name it
    folder: str  # the class folder's name under --image_dir
    name: str  # the path relative to the class folder, '/'-separated: what the split hashes
    label: str
    set: str
    digest: str
    predicted: str | None = None  # validation and test images: the run's answer

    @property
    def relative(self) -> str:
        """Where the run saw the file, relative to --image_dir."""
        return f"{self.folder}/{self.name}"


@dataclass
class Record:
    created: str  # ISO time, UTC
    image_dir: str  # absolute, as the run found it
    labels: list[str]
    images: list[RecordedImage]

    def folder_of(self) -> dict[str, str]:
        """label -> class folder name, for the classes of the run."""
        return {im.label: im.folder for im in self.images}

    def by_path(self) -> dict[str, RecordedImage]:
        return {im.path: im for im in self.images}


def write_record(report_dir: Path, image_dir: Path, labels: list[str], splits: list[ClassSplit], digest_of: dict,
                 predictions: Iterable[Predictions]) -> None:
    """Write ``run_images.jsonl`` atomically; an unwritable report folder is one sentence, as for the report."""
    predicted = {}
    for preds in predictions:
        if len(preds.names):
            guesses = np.asarray(preds.probabilities).argmax(axis=1)
            predicted.update({name: labels[int(g)] for name, g in zip(preds.names, guesses)})
    head = {"format": RECORD_FORMAT, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "image_dir": os.path.abspath(image_dir), "labels": list(labels)}
    lines = [json.dumps(head)]
    for split in splits:
        for set_name in SETS:
            for image in split.of(set_name):
                depth = len(image.name.split("/"))
                path = str(image.path)
                entry = RecordedImage(path, image.path.parts[-depth - 1], image.name, split.label, set_name,
                                      digest_of[image.path], predicted.get(path))
                lines.append(json.dumps({k: v for k, v in asdict(entry).items() if v is not None}))
    try:
        write_text_atomic(Path(report_dir) / RECORD_FILE, "\n".join(lines) + "\n")
    except OSError as exc:
        raise UserError(f"The outputs were written, but the report could not be: {exc.strerror or exc} "
                        f"({exc.filename or report_dir}).", exit_code=EXIT_FAILURE) from None


def read_record(report_dir: Path) -> Record | None:
    """The record of the last run written to ``report_dir``; None when there is none (or it cannot be read)."""
    try:
        text = (Path(report_dir) / RECORD_FILE).read_text(encoding="utf-8")
        lines = text.splitlines()
        head = json.loads(lines[0])
        if head.get("format") != RECORD_FORMAT:
            return None
        images = [RecordedImage(**json.loads(line)) for line in lines[1:] if line]
    except (OSError, ValueError, TypeError, IndexError, UnicodeDecodeError):
        return None
    return Record(head["created"], head["image_dir"], head["labels"], images)


def class_changes(previous: Record, classes: list[ImageClass], digest_of: dict) -> int:
    """How many of this run's images the previous run had under the same name and content, in another class."""
    before = {(im.name, im.digest): im.label for im in previous.images}
    changed = 0
    for image_class in classes:
        for image in image_class.images:
            digest = digest_of.get(image.path)
            label = before.get((image.name, digest))
            changed += label is not None and label != image_class.label
    return changed


def log_class_changes(report_dir: Path, classes: list[ImageClass], digest_of: dict) -> None:
    """Say how many images changed class since the previous run that wrote this report folder."""
    previous = read_record(report_dir)
    if previous is not None:
        log.info("%d image(s) changed class since the previous run.", class_changes(previous, classes, digest_of))
