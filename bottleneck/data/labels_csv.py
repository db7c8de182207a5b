"""Images and their labels from a CSV file (--labels_csv), listed as the walk lists class folders.

Rules (also in docs/data.md):
- one row per image: its path, then its label; with --multi_label the label cell
  may hold several labels separated by ``|`` (LABEL_SEPARATOR); further cells are
  ignored, and a first row ``path,label`` (or ``labels``) is a header;
- a relative path is relative to --image_dir when it is given, else to the CSV
  file's own folder;
- a label is derived from its text as a class folder's label is from the folder
  name (lower case, each run of other characters than letters and digits one
  space), so a CSV made from class folders gives the same labels;
- an image's set hangs on a hash of its file name (the last part of its path),
  as a class folder's image's hangs on its name in that folder, so the split of a
  CSV made from flat class folders is the split of those folders;
- a row that cannot be used is skipped with one sentence, as an unreadable image
  is: a missing file, a file that is not an image by its name, an empty label,
  several labels without --multi_label, and a path listed twice with different
  labels (every row of that path is skipped); with --strict any such row fails
  the run (exit 2).

The listing is made of the walk's ImageClass and ImageFile, one class per label,
so everything after it runs unchanged; with --multi_label an image is in the
class of each of its labels.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from .images import is_candidate
from .names import one_line, utf8_text
from .walk import FEW_IMAGES_WARNING, ImageClass, ImageFile, Listing, label_for_folder

LABEL_SEPARATOR = "|"
HEADER_PATHS = ("path", "image", "file", "filename", "image_path")
HEADER_LABELS = ("label", "labels")


@dataclass
class BadRow:
    row: int  # 1-based line of the CSV file
    path: str  # as written in the CSV
    reason: str

    def sentence(self, csv_name: str) -> str:
        return f"Skipping {one_line(self.path) if self.path else 'an empty path'} (row {self.row} of {csv_name}): " \
               f"{self.reason}."


@dataclass
class CsvListing(Listing):
    bad_rows: list[BadRow] = field(default_factory=list)
    rows: int = 0  # rows read, the header left out


def read_labels_csv(csv_path, image_dir=None, multi_label: bool = False, strict: bool = False) -> CsvListing:
    """The classes (one per label) of the images that ``csv_path`` lists; raise UserError when the file cannot
    be read, holds fewer than two labels, or (``strict``) has a row that cannot be used."""
    csv_path = Path(csv_path)
    base = Path(image_dir) if image_dir else csv_path.parent
    rows = _rows(csv_path)
    listing = CsvListing(classes=[], rows=len(rows))
    labels_of: dict[str, tuple[str, ...]] = {}  # the image's absolute path -> its labels
    first_row: dict[str, tuple[int, str]] = {}  # the image's absolute path -> (its first row, its path as written)
    image_of: dict[str, ImageFile] = {}
    conflicting: dict[str, list[tuple[int, tuple[str, ...]]]] = {}  # path -> (row, labels) of each of its rows
    for number, cells in rows:
        written = cells[0].strip() if cells else ""
        reason, labels = _problem(written, cells[1] if len(cells) > 1 else "", base, multi_label)
        if reason:
            listing.bad_rows.append(BadRow(number, written, reason))
            continue
        path = base / written
        key = os.path.abspath(path)
        if key in labels_of:
            if labels_of[key] != labels or key in conflicting:
                conflicting.setdefault(key, [(first_row[key][0], labels_of[key])]).append((number, labels))
            continue
        labels_of[key], first_row[key] = labels, (number, written)
        image_of[key] = ImageFile(path=path, name=Path(written).name)
    for key, listed in conflicting.items():
        numbers = " and ".join(str(number) for number, _labels in listed)
        said = " and ".join(dict.fromkeys(f"'{' | '.join(labels)}'" for _number, labels in listed))
        listing.bad_rows.append(BadRow(listed[0][0], first_row[key][1], f"it is listed in rows {numbers} with "
                                       f"different labels ({said}), so none of them is used"))
        del labels_of[key]
    listing.bad_rows.sort(key=lambda bad: bad.row)
    if strict and listing.bad_rows:
        first = listing.bad_rows[0]
        raise UserError(f"{len(listing.bad_rows)} row(s) of {one_line(csv_path)} cannot be used and --strict is set, "
                        f"e.g. row {first.row} ({one_line(first.path)}): {first.reason}.")
    if listing.bad_rows:
        listing.warnings.append(f"Skipping {len(listing.bad_rows)} of the {len(rows)} rows of {one_line(csv_path)}, "
                                "which cannot be used:")
    listing.warnings += [bad.sentence(utf8_text(csv_path.name)) for bad in listing.bad_rows]
    members: dict[str, list[ImageFile]] = {}
    for key, labels in labels_of.items():
        for label in labels:
            members.setdefault(label, []).append(image_of[key])
    listing.classes = [ImageClass(label, base / label, images) for label, images in sorted(members.items())]
    listing.warnings += [f"Label '{c.label}' has less than {FEW_IMAGES_WARNING} images, which may cause issues."
                         for c in listing.classes if len(c.images) < FEW_IMAGES_WARNING]
    if not listing.classes:
        raise UserError(f"No usable row in {one_line(csv_path)}: each row needs the path of an image file and its "
                        "label (see the lines above for each row that was skipped).")
    if len(listing.classes) == 1:
        raise UserError(f"Only one label found in {one_line(csv_path)} ({listing.classes[0].label}); multiple "
                        "classes are needed for classification.")
    return listing


def _rows(csv_path: Path) -> list[tuple[int, list[str]]]:
    """(line number, cells) of every row that is not blank, the header left out."""
    try:
        with open(csv_path, encoding="utf-8-sig", newline="") as handle:
            rows = [(number + 1, cells) for number, cells in enumerate(csv.reader(handle))]
    except FileNotFoundError:
        raise UserError(f"--labels_csv '{one_line(csv_path)}' not found.") from None
    except IsADirectoryError:
        raise UserError(f"--labels_csv '{one_line(csv_path)}' is a folder; name a CSV file of image paths and "
                        "labels.") from None
    except UnicodeDecodeError:
        raise UserError(f"--labels_csv '{one_line(csv_path)}' is not UTF-8 text; save it as UTF-8.") from None
    except csv.Error as exc:
        raise UserError(f"--labels_csv '{one_line(csv_path)}' is not a readable CSV file ({exc}).") from None
    except OSError as exc:
        raise UserError(f"--labels_csv '{one_line(csv_path)}' cannot be read ({exc.strerror or exc}).") from None
    rows = [(number, cells) for number, cells in rows if any(cell.strip() for cell in cells)]
    if rows and _is_header(rows[0][1]):
        rows = rows[1:]
    return rows


def _is_header(cells: list[str]) -> bool:
    return len(cells) >= 2 and cells[0].strip().lower() in HEADER_PATHS and cells[1].strip().lower() in HEADER_LABELS


def _problem(written: str, label_cell: str, base: Path, multi_label: bool) -> tuple[str | None, tuple[str, ...]]:
    """Why a row cannot be used (or None), and its labels."""
    if not written:
        return "the row has no path", ()
    path = base / written
    if path.is_dir():
        return "it is a folder, not an image file", ()
    if not path.is_file():
        return "no such file", ()
    if not is_candidate(path.name):
        return "not an image file by its name", ()
    parts = [part for part in label_cell.split(LABEL_SEPARATOR) if part.strip()]
    labels = tuple(sorted({label_for_folder(part).strip() for part in parts} - {""}))
    if not labels:
        return "its label is empty", ()
    if len(labels) > 1 and not multi_label:
        return f"it has {len(labels)} labels separated by '{LABEL_SEPARATOR}'; give --multi_label to use them", ()
    return None, labels
