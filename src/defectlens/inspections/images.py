"""Optional copies of inspected images, stored under their content hash.

``ImageStore(folder).put(data)`` writes the bytes to ``<folder>/<aa>/<sha256>.<ext>`` (``ext`` from
the decoded format, never from the client's file name), fsyncs them and returns the relative path
the inspection log records. The same image stored twice is one file.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

#: Extension per PIL format name; other formats are stored as ``.img``.
_EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "BMP": "bmp", "TIFF": "tif", "WEBP": "webp", "GIF": "gif"}


class ImageStore:
    """A content-addressed folder of image files."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def put(self, data: bytes, *, image_format: str | None = None) -> str:
        """Store ``data`` durably; returns its path relative to the store's folder."""
        digest = hashlib.sha256(data).hexdigest()
        rel = Path(digest[:2]) / f"{digest}.{_EXTENSIONS.get((image_format or '').upper(), 'img')}"
        path = self.folder / rel
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            try:
                with tmp.open("wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                tmp.replace(path)
            except OSError:
                tmp.unlink(missing_ok=True)  # no half-written file left behind
                raise
        return rel.as_posix()

    def path(self, rel: str) -> Path:
        """The absolute path of a stored image (``rel`` as :meth:`put` returned it)."""
        return self.folder / rel
