"""Decide which images are for training, validation and testing.

The decision hangs on a hash of each file's name relative to its class folder,
with any ``_nohash_...`` suffix removed, exactly as the classic script computed
it (it hashed the full path, so moving the folder reshuffled the split).  An
image therefore stays in its set when others are added or the folder moves.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from ..console.notes import bounded
from .names import one_line
from .walk import ImageClass, ImageFile

SETS = ("training", "validation", "testing")
_MAX_NUM_IMAGES_PER_CLASS = 2**27 - 1  # the classic script's constant; keeps its percentages
_NOHASH = re.compile(r"_nohash_.*$")


@dataclass
class ClassSplit:
    label: str
    training: list[ImageFile] = field(default_factory=list)
    validation: list[ImageFile] = field(default_factory=list)
    testing: list[ImageFile] = field(default_factory=list)

    def of(self, set_name: str) -> list[ImageFile]:
        return getattr(self, set_name)


def percentage_hash(name: str) -> float:
    """Where a file name falls in [0, 100], stable across runs, machines and Python versions."""
    hash_name = _NOHASH.sub("", name)
    # surrogateescape: a file name that is not valid UTF-8 (an old Latin-1 archive, say) hashes as its raw bytes.
    digest = hashlib.sha1(hash_name.encode("utf-8", "surrogateescape")).hexdigest()
    return (int(digest, 16) % (_MAX_NUM_IMAGES_PER_CLASS + 1)) * (100.0 / _MAX_NUM_IMAGES_PER_CLASS)


def which_set(name: str, validation_percentage: float, testing_percentage: float) -> str:
    value = percentage_hash(name)
    if value < validation_percentage:
        return "validation"
    if value < testing_percentage + validation_percentage:
        return "testing"
    return "training"


def split_class(
    image_class: ImageClass, validation_percentage: float, testing_percentage: float
) -> tuple[ClassSplit, str | None]:
    """Split one class; returns the split and a note when small-class rules changed it."""
    split = ClassSplit(label=image_class.label)
    for image in image_class.images:
        split.of(which_set(image.name, validation_percentage, testing_percentage)).append(image)
    n = len(image_class.images)
    if n < 3:
        # Too few to hold out anything: every image trains, nothing is held out for this class.
        split.training = list(image_class.images)
        split.validation, split.testing = [], []
        return split, (
            f"Class '{image_class.label}' has only {n} image(s): all are used for training and "
            "none for validation or testing."
        )
    moved = []
    # A class with 3+ images keeps at least one image in every set that was asked for, so that
    # validation and test accuracy cover it (and no set is empty for it).
    wanted = [("training", True), ("validation", validation_percentage > 0), ("testing", testing_percentage > 0)]
    for set_name, asked in wanted:
        if asked and not split.of(set_name):
            donor = max(SETS, key=lambda s: len(split.of(s)))
            # Move the donor's image whose hash lies closest to this set's range: stable and deterministic.
            image = min(split.of(donor), key=lambda im: percentage_hash(im.name))
            split.of(donor).remove(image)
            split.of(set_name).append(image)
            moved.append(f"moved {one_line(image.name)} from {donor} to {set_name}")
    note = f"Class '{image_class.label}' has only {n} images: " + "; ".join(moved) + "." if moved else None
    return split, note


def split_classes(classes: list[ImageClass], validation_percentage: float, testing_percentage: float,
                  warn=print) -> list[ClassSplit]:
    """Every class split; ``warn`` hears about classes too small for every set (a bounded number of lines)."""
    splits, notes = [], []
    for image_class in classes:
        split, note = split_class(image_class, validation_percentage, testing_percentage)
        if note:
            notes.append(note)
        splits.append(split)
    for note in bounded(notes, "small classes with images moved between sets"):  # a thousand tiny classes: a few lines
        warn(note)
    return splits
