"""Find the classes and their images under --image_dir.

Rules (also in docs/data.md):
- every non-hidden sub-folder of --image_dir is a class; its label is the folder
  name lower-cased with each run of characters other than letters and digits
  (of any script) turned into one space, as the classic script did for ASCII;
- images are found anywhere below the class folder, nested folders included:
  a sub-folder of a class folder is never a class of its own;
- which files count as images is decided by extension (images.is_candidate);
  whether they really are images is decided later, by their content;
- hidden files and folders and macOS ``._*`` files are ignored; symbolic links
  are followed, but a folder is never visited twice, so link loops end, and a
  file reached twice within one class (a link to a sibling) counts once;
- a folder or file name that is not valid UTF-8 is accepted: the bytes that do
  not decode count as separators in the label, and the raw bytes are hashed.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UserError
from .images import is_candidate

FEW_IMAGES_WARNING = 20  # the classic script warned below this many images per class
_NOT_LETTER_OR_DIGIT = re.compile(r"[\W_]+")


@dataclass(frozen=True)
class ImageFile:
    path: Path  # where to read it
    name: str  # path relative to its class folder, '/'-separated: what the split hashes


@dataclass
class ImageClass:
    label: str
    folder: Path
    images: list[ImageFile]


@dataclass
class Listing:
    classes: list[ImageClass]  # sorted by label; only classes with images
    warnings: list[str] = field(default_factory=list)
    ignored_files: int = 0  # files whose extension is not an image's


def label_for_folder(folder_name: str) -> str:
    # A name that is not valid UTF-8 arrives with surrogate escapes; its undecodable bytes become separators.
    folder_name = folder_name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return _NOT_LETTER_OR_DIGIT.sub(" ", folder_name.lower())


def class_folders(image_dir) -> list[tuple[str, Path]]:
    """(label, folder) of every class folder of ``image_dir``, sorted by folder name; UserError when unusable."""
    root = Path(image_dir)
    if not root.exists():
        raise UserError(f"Image directory '{root}' not found.")
    if not root.is_dir():
        raise UserError(f"--image_dir '{root}' is a file; it must be a folder with one sub-folder per class.")
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except PermissionError:
        raise UserError(f"Image directory '{root}' cannot be read (permission denied).") from None
    folders = [e for e in entries if not e.name.startswith(".") and e.is_dir()]
    if not folders:
        raise UserError(
            f"No class sub-folders found in '{root}': put the images of each class in a sub-folder named after it."
        )
    seen_labels: dict[str, str] = {}
    found = []
    for entry in folders:
        label = label_for_folder(entry.name)
        if label in seen_labels:
            raise UserError(
                f"Folders '{seen_labels[label]}' and '{entry.name}' both give the label '{label}'; rename one of them."
            )
        seen_labels[label] = entry.name
        found.append((label, Path(entry.path)))
    return found


def list_images(image_dir) -> Listing:
    """Walk ``image_dir``; raise UserError when it cannot yield at least two classes."""
    root = Path(image_dir)
    listing = Listing(classes=[])
    for label, folder in class_folders(root):
        images, ignored = images_below(folder)
        listing.ignored_files += ignored
        if not images:
            listing.warnings.append(f"No images found in class folder '{folder.name}'; it is left out.")
            continue
        if len(images) < FEW_IMAGES_WARNING:
            listing.warnings.append(
                f"Folder '{folder.name}' has less than {FEW_IMAGES_WARNING} images, which may cause issues."
            )
        listing.classes.append(ImageClass(label=label, folder=folder, images=images))

    listing.classes.sort(key=lambda c: c.label)
    if not listing.classes:
        raise UserError(f"No images found in any class folder of '{root}'.")
    if len(listing.classes) == 1:
        raise UserError(
            f"Only one valid folder of images found at '{root}' ({listing.classes[0].folder.name}); "
            "multiple classes are needed for classification."
        )
    return listing


def images_below(folder: Path) -> tuple[list[ImageFile], int]:
    found: dict[str, tuple[int, ImageFile, bool]] = {}  # real path -> (walk order, image, reached by a file link)
    ignored = 0
    visited: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in visited:  # a symbolic link loop, or two links to one folder
            dirnames[:] = []
            continue
        visited.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for filename in sorted(filenames):
            path = Path(dirpath) / filename
            if not is_candidate(filename):
                if not filename.startswith("."):
                    ignored += 1
                continue
            if not path.is_file():  # a dangling link
                continue
            image = ImageFile(path=path, name=path.relative_to(folder).as_posix())
            is_link = path.is_symlink()
            real_file = os.path.realpath(path)
            kept = found.get(real_file)
            # One file reached twice in a class (a link to a sibling) counts once, under its own name rather
            # than the link's, so that adding such a link changes nothing.
            if kept is None or (kept[2] and not is_link):
                found[real_file] = (len(found) if kept is None else kept[0], image, is_link)
    images = [image for _order, image, _link in sorted(found.values(), key=lambda t: t[0])]
    return images, ignored
