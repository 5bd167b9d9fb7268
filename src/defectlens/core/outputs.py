"""Writing outputs safely: never through a dangling symlink, whole or not at all, and every failure
(a read-only folder, a full disk, a file-size limit, a name that is a file) as one error that names
the path and the reason, the exit code 2 of a problem the user can fix, never an internal error.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from defectlens.core.errors import DefectlensError

#: What an OSError of writing means to the user, by errno.
_REASONS = {
    errno.ENOSPC: "no space left on the device",
    errno.EFBIG: "file too large (a file-size limit, see 'ulimit -f')",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EEXIST: "a file of that name is in the way (a folder is needed)",
    errno.ENOTDIR: "a file of that name is in the way (a folder is needed)",
    errno.EISDIR: "it is a folder (a file is needed)",
    errno.ENAMETOOLONG: "file name too long",
    errno.ELOOP: "too many levels of symbolic links",
    errno.EIO: "input/output error",
}


def os_reason(exc: OSError) -> str:
    """A short reason for ``exc`` a user can act on."""
    return _REASONS.get(exc.errno or 0) or exc.strerror or type(exc).__name__


def output_error(path: str | Path | None, exc: OSError, *, after: str = "") -> DefectlensError:
    """The error to raise when writing ``path`` failed with ``exc``: the path, the reason and, in
    ``after``, what was kept."""
    where = str(path) if path is not None else str(exc.filename or "output")
    return DefectlensError(f"{where}: cannot write: {os_reason(exc)}" + (f"; {after}" if after else ""))


def check_output(path: str | Path, *, force: bool, what: str = "output") -> None:
    """Refuse to write through a dangling symbolic link at ``path`` unless ``force`` (then the link
    itself is removed, never followed): writing there would create the link's target, a file the
    user never named.

    Raises:
        DefectlensError: naming the link and its target.
    """
    p = Path(path)
    if not p.is_symlink() or p.exists():
        return
    if not force:
        raise DefectlensError(
            f"{p}: {what} is a symbolic link to {p.readlink()}, which does not exist; outputs are never written "
            "through a dangling link: remove it, or pass --force to replace the link"
        )
    try:
        p.unlink()
    except OSError as exc:
        raise output_error(p, exc) from None


def open_output(path: str | Path) -> IO[bytes]:
    """``path`` opened for writing, unbuffered: a symbolic link there is replaced, never followed.

    The caller has checked (or forced) that the file may be replaced.
    """
    p = Path(path)
    if p.is_symlink():
        p.unlink()
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    return open(os.open(p, flags, 0o666), "wb", buffering=0)  # noqa: PTH123  # an fd, opened without following


def write_all(fh: IO[bytes], data: bytes) -> None:
    """All of ``data`` to an unbuffered file (a raw write can take only part of it, as at a size limit)."""
    view = memoryview(data)
    while view:
        n = fh.write(view)
        if not n:
            raise OSError(errno.EIO, "the file took no more bytes")
        view = view[n:]


@contextlib.contextmanager
def atomic_output(path: str | Path, *, force: bool = True) -> Iterator[IO[bytes]]:
    """Write ``path`` whole or not at all: into a temporary file beside it, renamed over ``path`` only
    when the block ends without an error (a rename replaces a symbolic link, never follows it).

    Raises:
        DefectlensError: on any write failure, naming ``path`` and the reason; ``path`` is untouched.
    """
    p = Path(path)
    check_output(p, force=force)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    try:
        with open_output(tmp) as fh:
            yield fh
            os.fsync(fh.fileno())
        tmp.replace(p)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise output_error(p, exc, after="nothing was written") from None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


#: OSError numbers that mean a problem of the machine or the user's files (a full or read-only disk,
#: a permission, a name in the way), not a defect of defectlens: exit code 2, never 3.
ENVIRONMENT_ERRNOS = frozenset(_REASONS) | {errno.ENOENT, errno.EMFILE, errno.ENFILE, errno.EXDEV}
