"""Write files so that readers only ever see a complete old or complete new file.

Each file is written to a temporary file beside its target and renamed over
it.  Inside ``all_or_nothing()`` the renames wait until the whole block has
succeeded, and then happen in two phases: first every target is checked and
its previous version kept aside (a hard link, which costs no space), then the
renames; if any of them fails, the ones already done are rolled back from
those copies.  So a run that fails while writing or placing its third output
(a full disk, a folder where a file should go) leaves every output as it was
instead of pairing a new graph with old labels.  SIGINT and SIGTERM are held
back for the few milliseconds of the renames.
"""
from __future__ import annotations

import contextlib
import contextvars
import errno
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path

# Swaps waiting for the end of the innermost all_or_nothing() block.
_pending: contextvars.ContextVar[list | None] = contextvars.ContextVar("atomic_pending", default=None)


class Swap:
    """One prepared replacement, placed in two phases by ``place_all``.

    ``prepare()`` checks the target and keeps its previous version without touching it;
    ``commit()`` puts the new version in place; ``rollback()`` brings the previous one back
    after a commit; ``discard()`` removes what was prepared; ``finish()`` drops the kept
    previous version once every swap is in place.  ``target`` (optional) lets a block refuse
    two outputs on one path.
    """

    target: Path | None = None

    def prepare(self) -> None: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    def discard(self) -> None: ...
    def finish(self) -> None: ...


class _Callbacks(Swap):
    def __init__(self, commit, discard=None, prepare=None, rollback=None, finish=None, target=None):
        self._commit, self._discard, self._prepare = commit, discard, prepare
        self._rollback, self._finish = rollback, finish
        self.target = None if target is None else Path(target)

    def prepare(self):
        if self._prepare:
            self._prepare()

    def commit(self):
        self._commit()

    def rollback(self):
        if self._rollback:
            self._rollback()

    def discard(self):
        if self._discard:
            self._discard()

    def finish(self):
        if self._finish:
            self._finish()


class FileSwap(Swap):
    """A finished temporary file (on the target's file system) to be renamed over ``target``."""

    def __init__(self, tmp, target):
        self.tmp, self.target = Path(tmp), Path(target)
        self.backup: Path | None = None
        self.committed = False

    def prepare(self):
        target = self.target
        if target.is_dir() and not target.is_symlink():
            raise _naming(IsADirectoryError(errno.EISDIR, "a folder is in the way of this file"), target)
        if os.path.lexists(target):
            fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".previous", dir=target.parent)
            os.close(fd)
            os.unlink(name)
            try:
                os.link(target, name, follow_symlinks=False)  # no space needed, and the target stays in place
            except OSError:
                shutil.copy2(target, name, follow_symlinks=False)  # a file system without hard links
            self.backup = Path(name)

    def commit(self):
        try:
            os.replace(self.tmp, self.target)
        except OSError as exc:
            raise _naming(exc, self.target) from None
        self.committed = True

    def rollback(self):
        if not self.committed:
            return
        if self.backup is not None:
            os.replace(self.backup, self.target)
            self.backup = None
        else:
            os.unlink(self.target)
        self.committed = False

    def discard(self):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp)
        if not self.committed:  # a backup whose rollback failed is the only copy left: keep it
            self.finish()

    def finish(self):
        if self.backup is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.backup)
            self.backup = None


@contextlib.contextmanager
def all_or_nothing():
    """Defer every atomic replacement made inside the block to its successful end.

    If the block raises, no target is touched and every temporary file is
    removed.  If it succeeds, every target is checked and kept aside first,
    then the prepared files are renamed into place; a failure at any point
    puts every target back as it was.  Nested blocks join the outer one.
    """
    if _pending.get() is not None:
        yield
        return
    pending: list[Swap] = []
    token = _pending.set(pending)
    try:
        yield
    except BaseException:
        _pending.reset(token)
        _discard(pending)
        raise
    _pending.reset(token)
    place_all(pending)


def place_all(swaps: list[Swap]) -> None:
    """Two-phase commit of ``swaps``: all of them land, or every target is left as it was."""
    targets = [os.path.abspath(s.target) for s in swaps if s.target is not None]
    clash = next((t for t in targets if targets.count(t) > 1), None)
    with _signals_held():
        done: list[Swap] = []
        try:
            if clash is not None:
                raise _naming(FileExistsError(errno.EEXIST, "two outputs were to be written to one path"),
                              Path(clash))
            for swap in swaps:
                swap.prepare()
            for swap in swaps:
                done.append(swap)  # before commit: a half-done commit is rolled back too
                swap.commit()
        except BaseException:
            for swap in reversed(done):
                with contextlib.suppress(OSError):
                    swap.rollback()
            _discard(swaps)
            raise
        for swap in swaps:
            with contextlib.suppress(OSError):
                swap.finish()


def defer(commit, discard=None, *, prepare=None, rollback=None, finish=None, target=None) -> None:
    """Run ``commit()`` now, or in the two-phase commit at the successful end of the current block.

    ``discard()`` cleans up instead when the block fails; ``prepare``, ``rollback`` and
    ``finish`` are the other phases of a ``Swap``.  Writers other than atomic_path (a
    SavedModel folder swap, say) use this to join the block.
    """
    join(_Callbacks(commit, discard, prepare, rollback, finish, target))


def remove_atomic(target) -> None:
    """Remove ``target`` together with the current all_or_nothing() block's files: only when they all land, and
    back in place if the block's placing fails (a file of an earlier run that the new one must not sit beside)."""
    target = Path(target)
    if not target.is_file():
        return
    aside = target.with_name(f".{target.name}.{os.getpid()}.removed")

    def commit():
        with contextlib.suppress(FileNotFoundError):  # gone already: nothing to remove
            os.replace(target, aside)

    def rollback():
        if aside.exists():
            os.replace(aside, target)

    defer(commit, rollback=rollback, finish=lambda: aside.unlink(missing_ok=True), target=target)


def join(swap: Swap) -> None:
    """Place ``swap`` now, or at the successful end of the current all_or_nothing() block."""
    pending = _pending.get()
    if pending is None:
        place_all([swap])
    else:
        pending.append(swap)


def newest(target) -> Path:
    """Where ``target``'s newest content is: inside all_or_nothing(), a file written earlier in the block waits
    beside its target until the block ends, so code that reads it back (a page embedding a plot) reads it there."""
    wanted = os.path.abspath(target)
    for swap in reversed(_pending.get() or []):
        if isinstance(swap, FileSwap) and os.path.abspath(swap.target) == wanted:
            return swap.tmp
    return Path(target)


def _discard(pending) -> None:
    for swap in pending:
        with contextlib.suppress(OSError):
            swap.discard()


@contextlib.contextmanager
def _signals_held():
    """Hold SIGINT and SIGTERM back while files are renamed, so a run is never stopped half way through.

    Python runs signal handlers in the main thread whichever thread the signal reached, so swapping the
    handlers for a recorder holds them back; the first one recorded is handled once the renames are done.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.signal(signum, lambda signum, _frame: received.append(signum)) for signum in held}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        if received:
            handler = previous[received[0]]
            if callable(handler):
                handler(received[0], None)
            elif handler in (signal.SIG_DFL, None):
                signal.raise_signal(received[0])


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
    swap = FileSwap(tmp, target)
    discard = swap.discard

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
    join(swap)


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
