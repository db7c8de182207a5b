"""Write files so that readers only ever see a complete old or complete new file.

Each file is written to a temporary file beside its target and renamed over
it.  Inside ``all_or_nothing()`` the renames wait until the whole block has
succeeded, so a run that fails while writing its third output (a full disk,
say) leaves the first two as they were instead of pairing a new graph with
old labels.
"""
from __future__ import annotations

import contextlib
import contextvars
import errno
import os
import tempfile
from pathlib import Path

# (commit, discard) pairs waiting for the end of the innermost all_or_nothing() block.
_pending: contextvars.ContextVar[list | None] = contextvars.ContextVar("atomic_pending", default=None)


@contextlib.contextmanager
def all_or_nothing():
    """Defer every atomic replacement made inside the block to its successful end.

    If the block raises, no target is touched and every temporary file is
    removed.  If it succeeds, the prepared files are renamed into place one
    after the other; renames need no disk space, so a full disk cannot stop
    them half way.  Nested blocks join the outer one.
    """
    if _pending.get() is not None:
        yield
        return
    pending: list = []
    token = _pending.set(pending)
    try:
        yield
    except BaseException:
        _pending.reset(token)
        _discard(pending)
        raise
    _pending.reset(token)
    for i, (commit, _discard_one) in enumerate(pending):
        try:
            commit()
        except BaseException:
            _discard(pending[i + 1 :])
            raise


def defer(commit, discard=None) -> None:
    """Run ``commit()`` now, or at the successful end of the current all_or_nothing() block.

    ``discard()`` cleans up instead when the block fails.  Writers other than
    atomic_path (a SavedModel folder swap, say) use this to join the block.
    """
    pending = _pending.get()
    if pending is None:
        commit()
    else:
        pending.append((commit, discard))


def _discard(pending) -> None:
    for _commit, discard in pending:
        if discard is not None:
            with contextlib.suppress(OSError):
                discard()


@contextlib.contextmanager
def atomic_path(target):
    """Yield a temporary path beside ``target``; on success rename it over ``target``.

    The rename is atomic on POSIX file systems, so an interrupted or failed
    write leaves the previous file untouched and no partial file behind.
    Errors name ``target``, not the temporary file.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        # Some folder on the way is a file: say so, rather than "File exists".
        raise NotADirectoryError(errno.ENOTDIR, "a parent of this path is a file, not a folder", str(target)) from None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    except OSError as exc:
        raise _naming(exc, target) from None
    os.close(fd)
    tmp = Path(tmp)

    def discard():
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)

    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; outputs should look ordinary
    except OSError as exc:
        discard()
        raise _naming(exc, target) from None
    except BaseException:
        discard()
        raise
    defer(lambda: _replace(tmp, target, discard), discard)


def _replace(tmp: Path, target: Path, discard) -> None:
    try:
        os.replace(tmp, target)
    except OSError as exc:
        discard()
        raise _naming(exc, target) from None


def _naming(exc: OSError, target: Path) -> OSError:
    """The same error, about ``target`` rather than the temporary file beside it (or no file at all)."""
    if exc.errno is None:
        return exc  # a bare OSError('message'): a file name would only garble its text
    if exc.filename is None or Path(os.fsdecode(exc.filename)).name.startswith(f".{target.name}."):
        exc.filename = str(target)
    return exc


def write_bytes_atomic(target, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(target, text: str) -> None:
    # backslashreplace: a file name that is not UTF-8 (held as surrogates) is written as \udcNN escapes,
    # so the file stays valid UTF-8, and in JSON those escapes read back as the very same name.
    write_bytes_atomic(target, text.encode("utf-8", "backslashreplace"))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
