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
  not decode count as separators in the label, and the raw bytes are hashed;
- a name is brought to Unicode NFC before its label is derived, so ``café``
  typed on macOS (NFD) and on Linux (NFC) is one label; two folders that still
  give one label are refused, naming both;
- a class folder that is a link to another class folder (or reaches one
  through a link inside it) is left out with a warning: its images are that
  class's images, not a class of their own;
- the files that are left out (not an image by name, hidden, a broken link)
  are counted and reported by reason;
- the run's own outputs (``outputs``: the report folder, the cache, a
  SavedModel, the graph...) are never images, wherever they sit: an output
  folder or file inside --image_dir is left out and named in
  ``left_out_outputs``, so a report folder beside the graph never becomes a
  class of the next run.
"""
from __future__ import annotations

import os
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from .images import is_candidate
from .names import utf8_text

FEW_IMAGES_WARNING = 20  # the classic script warned below this many images per class
FEW_FOLDERS_WARNED = 20  # beyond this many small class folders, one warning names the first few
FEW_FOLDERS_NAMED = 10
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
    ignored: Counter = field(default_factory=Counter)  # reason -> files left out for it
    left_out_outputs: dict[Path, str] = field(default_factory=dict)  # an output met in the walk -> its flag

    @property
    def ignored_files(self) -> int:
        return sum(self.ignored.values())

    def ignored_summary(self) -> str | None:
        """One sentence saying how many files were left out and why, or None."""
        if not self.ignored:
            return None
        reasons = ", ".join(f"{count} {reason}" for reason, count in
                            sorted(self.ignored.items(), key=lambda item: (-item[1], item[0])))
        return f"Ignored {self.ignored_files} file(s) that are not images by their name: {reasons}."

    def outputs_summary(self) -> str | None:
        """One sentence naming the run's own outputs that the walk left out, or None."""
        if not self.left_out_outputs:
            return None
        named = ", ".join(f"'{utf8_text(path)}' ({flag})" for path, flag in self.left_out_outputs.items())
        return f"Left out the run's own outputs inside the image folder: {named}."


class _Outputs:
    """The run's output locations inside one image folder, and which of them the walk met."""

    def __init__(self, root: Path, outputs: Iterable[tuple[str, Path]], listing: Listing):
        inside = os.path.realpath(root) + os.sep
        self.flag_of = {}  # real path -> (flag, the path as given)
        for flag, path in outputs:
            real = os.path.realpath(os.path.abspath(path))
            if real.startswith(inside):  # an output that holds the image folder is not a reason to leave it out
                self.flag_of.setdefault(real, (flag, Path(path)))
        self.listing = listing

    def met(self, real: str) -> bool:
        """Whether ``real`` (a real path) is an output or lies in an output folder; records the output met."""
        if not self.flag_of:
            return False
        probe = real
        while True:
            found = self.flag_of.get(probe)
            if found is not None:
                flag, given = found
                self.listing.left_out_outputs.setdefault(given, flag)
                return True
            parent = os.path.dirname(probe)
            if parent == probe:
                return False
            probe = parent


def walk_folders(folder, visited: dict[str, str], owner: str = "", refuse=None):
    """Yield (folder path, sorted visible file names) below ``folder``, following symbolic links.

    No folder is visited twice: ``visited`` maps each real folder already walked to its ``owner``, so
    link loops end and a folder reached again (from this walk or an earlier one) is skipped.
    ``refuse(real_path)`` may return a reason to leave a folder out; ``refuse`` is told of every skip.
    """
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        real = os.path.realpath(dirpath)
        reason = refuse(dirpath, real) if refuse else None
        if real in visited or reason:
            dirnames[:] = []
            continue
        visited[real] = owner
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        yield dirpath, sorted(filenames)


def label_for_folder(folder_name: str) -> str:
    # A name that is not valid UTF-8 arrives with surrogate escapes; its undecodable bytes become separators.
    folder_name = folder_name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    # NFC: an accent typed as a separate combining mark (macOS names are NFD) joins its letter
    # instead of becoming a separator; lower() can decompose again, hence the second pass.
    folder_name = unicodedata.normalize("NFC", unicodedata.normalize("NFC", folder_name).lower())
    return _NOT_LETTER_OR_DIGIT.sub(" ", folder_name)


def list_images(image_dir, outputs: Iterable[tuple[str, Path]] = ()) -> Listing:
    """Walk ``image_dir``; raise UserError when it cannot yield at least two classes.

    ``outputs`` are the run's output locations as (flag, path): those inside ``image_dir`` are left out.
    """
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

    listing = Listing(classes=[])
    outputs = _Outputs(root, outputs, listing)
    folders = [e for e in folders if not outputs.met(os.path.realpath(e.path))]
    # A class folder reached under two names (a link to another class folder) is one class, not two:
    # the folder itself wins over a link to it.
    owner_of: dict[str, str] = {}
    for entry in sorted(folders, key=lambda e: (e.is_symlink(), e.name)):
        owner_of.setdefault(os.path.realpath(entry.path), entry.name)
    # The class folders that really live in --image_dir: a link to one of them, inside another class, is not
    # followed.  (A folder elsewhere that a class folder links to may be linked from other classes too.)
    owned = {real: name for real, name in owner_of.items() if not (root / name).is_symlink()}
    seen_labels: dict[str, str] = {}
    for entry in folders:
        owner = owner_of[os.path.realpath(entry.path)]
        if owner != entry.name:
            listing.warnings.append(f"Class folder '{utf8_text(entry.name)}' is a link to the class folder "
                                    f"'{utf8_text(owner)}'; it is left out, as no folder is visited twice.")
            continue
        label = label_for_folder(entry.name)
        if label in seen_labels:
            first = seen_labels[label]
            same = unicodedata.normalize("NFC", first) == unicodedata.normalize("NFC", entry.name)
            how = " (the same name in two Unicode forms, NFC and NFD)" if same else ""
            raise UserError(
                f"Folders '{utf8_text(first)}' and '{utf8_text(entry.name)}' both give the label '{label}'{how}; "
                "rename or merge them."
            )
        seen_labels[label] = entry.name
        images = _images_below(Path(entry.path), entry.name, owned, listing, outputs)
        if not images:
            listing.warnings.append(f"No images found in class folder '{utf8_text(entry.name)}'; it is left out.")
            continue
        listing.classes.append(ImageClass(label=label, folder=Path(entry.path), images=images))
    few = [c.folder.name for c in sorted(listing.classes, key=lambda c: c.folder.name)
           if len(c.images) < FEW_IMAGES_WARNING]
    if len(few) > FEW_FOLDERS_WARNED:  # a thousand folders of two images: one line, not a thousand
        listing.warnings.append(
            f"{len(few)} class folders have less than {FEW_IMAGES_WARNING} images, which may cause issues: "
            f"{', '.join(utf8_text(name) for name in few[:FEW_FOLDERS_NAMED])} and {len(few) - FEW_FOLDERS_NAMED} more."
        )
    else:
        listing.warnings += [f"Folder '{utf8_text(name)}' has less than {FEW_IMAGES_WARNING} images, which may cause "
                             "issues." for name in few]

    listing.classes.sort(key=lambda c: c.label)
    if not listing.classes and not folders:
        raise UserError(
            f"No class sub-folders found in '{root}': put the images of each class in a sub-folder named after it."
        )
    if not listing.classes:
        raise UserError(f"No images found in any class folder of '{root}'.")
    if len(listing.classes) == 1:
        raise UserError(
            f"Only one valid folder of images found at '{root}' ({listing.classes[0].folder.name}); "
            "multiple classes are needed for classification."
        )
    return listing


def _images_below(folder: Path, name: str, owned: dict[str, str], listing: Listing,
                  outputs: _Outputs) -> list[ImageFile]:
    """The images below one class folder.  A folder outside every class folder that two classes both link to
    is walked for each (the run then warns about the same image in several classes); a link to another
    class folder is not followed."""
    found: dict[str, tuple[int, ImageFile, bool]] = {}  # real path -> (walk order, image, reached by a file link)
    own = os.path.realpath(folder)

    def refuse(dirpath, real):
        if outputs.met(real):
            return "an output"
        other = owned.get(real)
        if other is not None and real != own:
            listing.warnings.append(f"'{utf8_text(dirpath)}' is a link to the class folder '{utf8_text(other)}'; "
                                    f"its images stay in that class only.")
            return "another class"
        return None

    for dirpath, filenames in walk_folders(folder, {}, name, refuse):
        for filename in filenames:
            path = Path(dirpath) / filename
            if filename.startswith("."):
                listing.ignored["hidden"] += 1
                continue
            if outputs.flag_of and outputs.met(os.path.realpath(path)):
                continue
            if not is_candidate(filename):
                listing.ignored[_kind(filename)] += 1
                continue
            if not path.is_file():
                listing.ignored["broken link" if path.is_symlink() else "not a regular file"] += 1
                continue
            image = ImageFile(path=path, name=path.relative_to(folder).as_posix())
            is_link = path.is_symlink()
            real_file = os.path.realpath(path)
            kept = found.get(real_file)
            # One file reached twice in a class (a link to a sibling) counts once, under its own name rather
            # than the link's, so that adding such a link changes nothing.
            if kept is None or (kept[2] and not is_link):
                found[real_file] = (len(found) if kept is None else kept[0], image, is_link)
    return [image for _order, image, _link in sorted(found.values(), key=lambda t: t[0])]


def _kind(filename: str) -> str:
    extension = os.path.splitext(filename)[1].lower()
    return utf8_text(extension) if extension else "without extension"

