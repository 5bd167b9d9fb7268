"""Walking folders of images: every entry ends up as a file to read or as a problem with its reason.

``predict DIR`` and ``data import`` both walk folders through :func:`walk`. Nothing found is dropped
silently and nothing hangs: symlinked folders are followed once (a link back to a folder above it
is a loop, reported, not followed), dangling symlinks, FIFOs, sockets and devices are reported and
never opened (opening a FIFO blocks until someone writes to it), a folder named like an image is
reported (and walked), and a folder that cannot be listed is reported with its reason.
"""

from __future__ import annotations

import errno
import stat
from dataclasses import dataclass
from pathlib import Path

from defectlens.data.images import file_kind

#: File name endings of the image formats defectlens reads (see ``data.images.ACCEPTED_FORMATS``).
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".pbm", ".pnm"}
)


@dataclass(frozen=True)
class Entry:
    """One thing found: a regular file to read (``problem`` None), or why it cannot be read."""

    path: Path
    problem: str | None = None


def inspect(path: Path) -> tuple[str, str | None]:
    """What ``path`` is, following symlinks: ``("file" | "dir" | "other", problem)``.

    ``problem`` says why it cannot be used (dangling symlink, symlink loop, FIFO, permission denied),
    or is None for a file or folder.
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            return "other", f"dangling symlink (its target {path.readlink()} is missing)"
        return "other", "vanished while the folder was read"
    except PermissionError:
        return "other", "permission denied"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "other", "symlink loop (the link points back to itself)"
        return "other", f"cannot access: {exc.strerror or exc}"
    if stat.S_ISDIR(st.st_mode):
        return "dir", None
    if stat.S_ISREG(st.st_mode):
        return "file", None
    return "other", f"{file_kind(st.st_mode)}, not a regular file; not opened"


def walk(root: Path, *, skip_hidden: bool = False) -> list[Entry]:
    """Every regular file below ``root`` and every problem met on the way, sorted by path.

    Args:
        root: the folder to walk (a symlink to a folder is fine).
        skip_hidden: leave out names starting with ``.`` (and everything below them).
    """
    root_stat = root.stat()
    seen: dict[tuple[int, int], Path] = {(root_stat.st_dev, root_stat.st_ino): root}
    out: list[Entry] = []
    stack: list[tuple[Path, frozenset[tuple[int, int]]]] = [(root, frozenset(seen))]
    while stack:
        folder, above = stack.pop()
        try:
            names = sorted(p.name for p in folder.iterdir())
        except PermissionError:
            out.append(Entry(folder, "permission denied: cannot list this folder, its files were not read"))
            continue
        except OSError as exc:
            out.append(Entry(folder, f"cannot list this folder: {exc.strerror or exc}"))
            continue
        for name in names:
            if skip_hidden and name.startswith("."):
                continue
            path = folder / name
            kind, problem = inspect(path)
            if kind == "file":
                out.append(Entry(path))
            elif kind == "other":
                out.append(Entry(path, problem))
            else:
                st = path.stat()
                key = (st.st_dev, st.st_ino)
                if key in above:
                    out.append(Entry(path, f"symlink loop: points back to {seen[key]}, not followed"))
                    continue
                if key in seen:
                    out.append(Entry(path, f"same folder as {seen[key]} (a symlink), not read twice"))
                    continue
                seen[key] = path
                if path.suffix.lower() in IMAGE_SUFFIXES:
                    out.append(Entry(path, "a folder named like an image file (its contents are read)"))
                stack.append((path, above | {key}))
    return sorted(out, key=lambda e: e.path)
