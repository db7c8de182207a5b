"""Model files sealed with the SHA-256 of their bytes when they are written, and checked against it before use.

A model file (the built-in network's converted weights, an int8 model) gets a
file beside it, ``<name>.sha256``, in ``sha256sum``'s format (``<hex>  <name>``,
so ``sha256sum -c`` checks it too).  Before the file is used its bytes are
hashed again: one cut short, overwritten or rewritten no longer matches, and
the caller rebuilds it or names the command that does.  A file without a seal
was written before seals were recorded: ``damage`` cannot judge it, so the
caller checks it by loading it, and seals it when it is sound.
"""
from __future__ import annotations

from pathlib import Path

from ..atomic import all_or_nothing, write_bytes_atomic, write_text_atomic
from ..data.digest import file_digest

SUFFIX = ".sha256"


def digest_path(target) -> Path:
    """Where ``target``'s seal is kept: beside it, its name plus ``.sha256``."""
    target = Path(target)
    return target.with_name(target.name + SUFFIX)


def write_seal(target, digest: str) -> None:
    """Record ``digest`` as ``target``'s SHA-256 (inside an all_or_nothing block, with the file itself)."""
    write_text_atomic(digest_path(target), f"{digest}  {Path(target).name}\n")


def seal(target) -> None:
    """Record the SHA-256 of ``target`` as it is now."""
    write_seal(target, file_digest(target))


def write_sealed(target, data: bytes) -> None:
    """Write ``data`` to ``target`` and its seal beside it, both or neither."""
    import hashlib

    with all_or_nothing():
        write_bytes_atomic(target, data)
        write_seal(target, hashlib.sha256(data).hexdigest())


def is_sealed(target) -> bool:
    return digest_path(target).is_file()


def damage(target) -> str | None:
    """Why ``target`` is not the file that was sealed, in words; None when it is, or when it has no seal."""
    try:
        recorded = digest_path(target).read_text(encoding="utf-8").split()[0]
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, IndexError):
        return "the SHA-256 recorded beside it cannot be read"
    try:
        actual = file_digest(target)
    except OSError as exc:
        return f"it cannot be read: {exc.strerror or exc}"
    return None if actual == recorded else "its SHA-256 is not the one recorded when it was written"
