"""Images with several labels (--multi_label): their split, one row per image, and their targets.

An image with several labels is in the class of each (labels_csv.py); it must
still be in one set for all of them.  ``split_by_image`` puts each image in the
set its file name hashes to (split.which_set, the split of every run), then
keeps the small-class rule of split.py for each label in turn: a label with
fewer than three images trains on all of them, and one with three or more gets
an image in every set that was asked for, moving the image of that label whose
hash lies closest, with all its other labels.
"""
from __future__ import annotations

import numpy as np

from ..console.notes import bounded
from .names import one_line
from .split import SETS, ClassSplit, percentage_hash, which_set
from .walk import ImageClass

ALL_LABELS = ""  # the label of the one split that holds every image once


def split_by_image(classes: list[ImageClass], validation_percentage: float, testing_percentage: float,
                   warn=print) -> list[ClassSplit]:
    """One ClassSplit per label, an image in the same set for each of its labels."""
    set_of = {}
    for image_class in classes:
        for image in image_class.images:
            set_of.setdefault(image.path, which_set(image.name, validation_percentage, testing_percentage))
    asked = [("training", True), ("validation", validation_percentage > 0), ("testing", testing_percentage > 0)]
    notes = []
    for image_class in classes:
        images, n = image_class.images, len(image_class.images)
        if n < 3:
            for image in images:
                set_of[image.path] = "training"
            notes.append(f"Label '{image_class.label}' has only {n} image(s): all are used for training and none "
                         "for validation or testing.")
            continue
        moved = []
        for set_name, wanted in asked:
            if wanted and not any(set_of[im.path] == set_name for im in images):
                donor = max(SETS, key=lambda s: sum(set_of[im.path] == s for im in images))
                image = min((im for im in images if set_of[im.path] == donor), key=lambda im: percentage_hash(im.name))
                set_of[image.path] = set_name
                moved.append(f"moved {one_line(image.name)} from {donor} to {set_name}")
        if moved:
            notes.append(f"Label '{image_class.label}' has only {n} images: " + "; ".join(moved) + ".")
    for note in bounded(notes, "small labels with images moved between sets"):
        warn(note)
    splits = []
    for image_class in classes:
        split = ClassSplit(label=image_class.label)
        for image in image_class.images:
            split.of(set_of[image.path]).append(image)
        splits.append(split)
    return splits


def image_splits(splits: list[ClassSplit]) -> list[ClassSplit]:
    """The images of per-label ``splits`` as one split that lists each image once (in the order they first come)."""
    one = ClassSplit(label=ALL_LABELS)
    for set_name in SETS:
        seen = {}
        for split in splits:
            for image in split.of(set_name):
                seen.setdefault(image.path, image)
        one.of(set_name).extend(seen.values())
    return [one]


def targets(names: list[str], splits: list[ClassSplit]) -> np.ndarray:
    """[len(names), labels] float32: 1 where the image named (its path as text) has the label of splits[j]."""
    columns: dict[str, list[int]] = {}
    for j, split in enumerate(splits):
        for set_name in SETS:
            for image in split.of(set_name):
                columns.setdefault(str(image.path), []).append(j)
    out = np.zeros((len(names), len(splits)), np.float32)
    for i, name in enumerate(names):
        out[i, columns[name]] = 1.0
    return out
