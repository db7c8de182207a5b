"""Changes to the image folder: move, exclude, keep and undo, each an atomic rename inside it, journaled.

Every change is refused, with one sentence saying why, unless it is safe:
the file must be where the run saw it (or where this journal last put it), a
regular file rather than a link, in a folder that really lies inside
--image_dir, with the content the run saw (its digest).  The destination is
a class folder directly inside --image_dir (new ones may be made, with a
plain name), and a rename never replaces a file that is already there.
Nothing is ever deleted: an excluded image moves to ``.excluded/<class>/``,
hidden from the walk.
"""
from __future__ import annotations

import ctypes
import errno
import os
import sys
import threading
import unicodedata
from pathlib import Path, PurePosixPath

from ..data.digest import file_digest
from ..data.names import one_line
from ..data.walk import label_for_folder
from ..errors import EXIT_FAILURE, UserError
from . import journal
from .journal import EXCLUDED_FOLDER, Change

MAX_NAME_BYTES = 255


class Refused(UserError):
    """A change that was not made, and why (the folder is as it was)."""

    def __init__(self, message: str):
        super().__init__(message, exit_code=EXIT_FAILURE)


class ImageFolder:
    """--image_dir, changed only through this object: one change at a time, each journaled."""

    def __init__(self, root, session: str | None = None):
        self.root = Path(root)
        self.real = os.path.realpath(self.root)
        if not os.path.isdir(self.real):
            raise UserError(f"Image directory '{one_line(self.root)}' not found.")
        self.session = session or journal.new_session()
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- what is there

    def class_folders(self) -> list[str]:
        """The names of the class folders now in --image_dir (not hidden, really inside it)."""
        found = []
        with os.scandir(self.real) as entries:
            for entry in entries:
                if not entry.name.startswith(".") and entry.is_dir() and self._inside(entry.path):
                    found.append(entry.name)
        return sorted(found)

    def path_of(self, relative: str) -> Path:
        """The file at ``relative`` (a path inside --image_dir): a regular file, not a link, really inside it."""
        path = self.root / self._checked_relative(relative)
        if os.path.islink(path):
            raise Refused(f"{one_line(relative)} is a link; only files themselves are moved.")
        if not self._inside(path.parent):
            raise Refused(f"{one_line(relative)} lies outside {one_line(self.root)} (through a link); it is left "
                          "alone.")
        try:
            regular = path.is_file()
        except OSError:
            regular = False
        if not regular:
            raise Refused(f"{one_line(relative)} is gone since the run (nothing was changed); run retrain.py again "
                          "to review what is there now.")
        return path

    # ---------------------------------------------------------------- changes

    def move(self, relative: str, digest: str, label: str, folder: str) -> Change:
        """Move the image to class ``folder`` (made when new), keeping its name and so its set."""
        folder = self.target_folder(folder)
        name = self._name_in_class(relative)
        if label_for_folder(folder) == label:
            raise Refused(f"{one_line(relative)} is already in class '{label}'.")
        return self._rename("move", relative, digest, label, f"{folder}/{name}")

    def exclude(self, relative: str, digest: str, label: str) -> Change:
        """Move the image out of the run, to ``.excluded/<class>/`` (a free name there if it clashes)."""
        parts = PurePosixPath(self._checked_relative(relative)).parts
        if parts[0] == EXCLUDED_FOLDER:
            raise Refused(f"{one_line(relative)} is already excluded.")
        target = PurePosixPath(EXCLUDED_FOLDER, *parts)
        with self._lock:
            free = target
            for n in range(2, 10_000):
                if not os.path.lexists(self.root / free):
                    break
                free = target.with_name(f"{PurePosixPath(parts[-1]).stem}~{n}{PurePosixPath(parts[-1]).suffix}")
        return self._rename("exclude", relative, digest, label, free.as_posix())

    def keep(self, relative: str, digest: str, label: str, pair: str | None = None) -> Change:
        """Journal that the image is right as labelled (or a duplicate pair is fine as it is); nothing moves."""
        with self._lock, journal.locked(self.root):
            self._check_content(relative, digest)
            change = Change("keep", self._name_in_class(relative), relative, relative, digest, label, self.session,
                            pair=pair)
            journal.append(self.root, change)
        return change

    def undo(self, change_id: str) -> Change:
        """Take back one change: the file goes back where it was, or a keep is forgotten."""
        with self._lock, journal.locked(self.root):
            changes = journal.read_changes(self.root)
            live = journal.live(changes)
            change = next((c for c in live if c.id == change_id), None)
            if change is None:
                raise Refused("That change is not in the journal, or was already undone.")
            later = [c for c in live[live.index(change) + 1:] if c.digest == change.digest
                     and c.source == change.target and c.action != "keep"]
            if later:
                raise Refused(f"{one_line(change.target)} was changed again later; undo that change first.")
            if change.action != "keep":
                self._check_content(change.target, change.digest)
                self._place(change.target, change.source)
            undo = Change("undo", change.file, change.target, change.source, change.digest, change.label,
                          self.session, undoes=change.id)
            self._journal_or_put_back(undo, change.action != "keep")
        return undo

    def undo_session(self, session: str | None = None) -> tuple[str | None, list[Change]]:
        """Take back every change of ``session`` (the latest one with changes that hold, by default), newest first."""
        live = journal.live(journal.read_changes(self.root))
        if session is None:
            session = max((c.session for c in live), default=None)
        undone = [self.undo(c.id) for c in reversed(live) if c.session == session]
        return session, undone

    # ---------------------------------------------------------------- checks and the rename itself

    def target_folder(self, folder: str) -> str:
        """A class folder to move into: an existing one, the one a typed name's label already belongs to, or a new
        plain name.  Refuses names that would leave --image_dir, hide the folder, or not be one folder."""
        folder = unicodedata.normalize("NFC", (folder or "").strip())
        existing = self.class_folders()
        if folder in existing:
            return folder
        if (not folder or folder.startswith(".") or "/" in folder or "\\" in folder or "\0" in folder
                or any(ord(c) < 0x20 or ord(c) == 0x7F for c in folder)
                or len(os.fsencode(folder)) > MAX_NAME_BYTES or not label_for_folder(folder).strip()):
            raise Refused(f"'{one_line(folder)}' cannot be a class folder: give a plain name (letters or digits, not "
                          "starting with a dot, without '/').")
        same_label = [f for f in existing if label_for_folder(f) == label_for_folder(folder)]
        return same_label[0] if same_label else folder

    def _checked_relative(self, relative: str) -> str:
        """``relative`` as a path inside --image_dir: no absolute path, no '..', no empty part."""
        path = PurePosixPath(relative or "")
        if (not relative or path.is_absolute() or "\0" in relative or "\\" in relative
                or any(part in ("", ".", "..") for part in relative.split("/")) or len(path.parts) < 2
                or (path.parts[0].startswith(".") and path.parts[0] != EXCLUDED_FOLDER)):
            raise Refused(f"'{one_line(relative)}' is not a path inside the image folder; it is left alone.")
        return relative

    def _name_in_class(self, relative: str) -> str:
        parts = PurePosixPath(self._checked_relative(relative)).parts
        parts = parts[2:] if parts[0] == EXCLUDED_FOLDER else parts[1:]
        return "/".join(parts)

    def _inside(self, path) -> bool:
        real = os.path.realpath(path)
        return real == self.real or real.startswith(self.real.rstrip(os.sep) + os.sep)

    def _check_content(self, relative: str, digest: str) -> None:
        path = self.path_of(relative)
        try:
            now = file_digest(path)
        except OSError as exc:
            reason = exc.strerror or exc
            raise Refused(f"{one_line(relative)} cannot be read ({reason}); nothing was changed.") from None
        if now != digest:
            raise Refused(f"{one_line(relative)} changed since the run (its content is not what the run saw); run "
                          "retrain.py again before reviewing it.")

    def _rename(self, action: str, relative: str, digest: str, label: str, target: str) -> Change:
        with self._lock, journal.locked(self.root):
            self._check_content(relative, digest)
            self._place(relative, target)
            change = Change(action, self._name_in_class(relative), relative, target, digest, label, self.session)
            self._journal_or_put_back(change, True)
        return change

    def _journal_or_put_back(self, change: Change, moved: bool) -> None:
        try:
            journal.append(self.root, change)
        except OSError:
            if moved:  # a change on disk that the journal does not know of could not be undone: take it back
                self._place(change.target, change.source)
            raise

    def _place(self, relative: str, target: str) -> None:
        """Rename ``relative`` to ``target`` (both inside --image_dir), making folders on the way, never replacing."""
        target = self._checked_relative(target)
        source = self.path_of(relative)
        destination = self.root / target
        parent = destination.parent
        for folder in reversed([parent, *parent.parents]):
            if len(folder.parts) <= len(self.root.parts):
                continue
            if os.path.islink(folder) and not self._inside(folder):
                raise Refused(f"{one_line(folder)} is a link out of {one_line(self.root)}; nothing was moved there.")
            try:
                os.mkdir(folder)
            except FileExistsError:
                if not folder.is_dir():
                    raise Refused(f"{one_line(target)}: {one_line(folder)} is a file, not a folder; nothing was "
                                  "moved.") from None
        if not self._inside(parent):
            raise Refused(f"{one_line(parent)} lies outside {one_line(self.root)}; nothing was moved there.")
        try:
            rename_no_replace(source, destination)
        except FileExistsError:
            raise Refused(f"{one_line(target)} already exists; nothing was moved (nothing is ever "
                          "overwritten).") from None
        except OSError as exc:
            raise Refused(f"{one_line(relative)} could not be moved to {one_line(target)}: "
                          f"{exc.strerror or exc}.") from None
        _sync_folders(source.parent, parent)


def rename_no_replace(source: Path, destination: Path) -> None:
    """Rename atomically, failing with FileExistsError rather than replacing an existing ``destination``.

    Linux's renameat2(RENAME_NOREPLACE) does it in one step; elsewhere (or on a file system without it) a hard
    link, which never replaces, then removing the old name; a file system without hard links gets a check
    followed by a plain rename.
    """
    if _renameat2 is not None:
        if _renameat2(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(destination), _RENAME_NOREPLACE) == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise OSError(code, os.strerror(code), str(source), None, str(destination))
    try:
        os.link(source, destination, follow_symlinks=False)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
            raise
        if os.path.lexists(destination):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(destination)) from None
        os.rename(source, destination)
        return
    os.unlink(source)


def _sync_folders(*folders: Path) -> None:
    """Flush the folders' entries, so that a rename survives a power cut as the journal line does."""
    for folder in dict.fromkeys(folders):
        try:
            fd = os.open(folder, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)


_AT_FDCWD, _RENAME_NOREPLACE = -100, 1


def _find_renameat2():
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_renameat2 = _find_renameat2()
