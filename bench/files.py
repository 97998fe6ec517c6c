"""Files bench writes into a folder a user named (the report, ``bench export``, caches): each is written as a new
file beside its target and renamed over it, never through what is already there.

A symbolic link planted at a target's place (``OUT/index.html -> ~/.bashrc``) is therefore replaced by the new
file, not followed: the file it pointed to is left as it was. ``rename`` replaces the link itself and is atomic,
so a reader never sees half a file and an interrupted write leaves the old file (or nothing) behind, never a
partial one. The temporary file is created with ``O_EXCL`` (``tempfile.mkstemp``), so it cannot be a link either.
Files are created with the permissions the user's umask gives a new file (mkstemp's own are 0600).

Nothing is read back from such a folder: the report attaches to MLflow the copies it wrote to a private temporary
folder. A leaf: imports nothing of bench, no torch.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_MODE = 0o666 & ~_umask()   # what open(..., "w") gives a new file


@contextlib.contextmanager
def replacing(target: str | os.PathLike) -> Iterator[Path]:
    """A temporary path in ``target``'s folder for a writer that wants a path (``savefig``, ``torch.save``); on a
    clean exit it is renamed over ``target`` (a link there is replaced, not followed), on an error removed."""
    target = Path(target)
    # a hidden name in the same folder (so the rename stays on one file system), ending as the target does
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem[:64]}.tmp-", suffix=target.suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, _MODE)
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(target: str | os.PathLike, data: bytes) -> Path:
    """``data`` as the new content of ``target`` (module docstring); returns the path."""
    with replacing(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def write_text(target: str | os.PathLike, text: str) -> Path:
    """``text`` (UTF-8) as the new content of ``target`` (module docstring); returns the path."""
    return write_bytes(target, text.encode("utf-8"))


def write_with(target: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """``write(path)`` into a temporary path, then renamed over ``target``; returns the path."""
    with replacing(target) as tmp:
        write(tmp)
    return Path(target)


__all__ = ["replacing", "write_bytes", "write_text", "write_with"]
