"""Frames from a video file, a network stream (RTSP, HTTP) or a USB camera, through OpenCV (``[video]`` extra).

One source, three kinds of endpoint, told apart by the station file's option (``path``, ``url``, ``device``)
or the CLI's short form ``--source video:PATH_OR_URL_OR_DEVICE_INDEX``:

- a **file** plays at its own frame rate (``realtime: true``, the default) or as fast as the station takes
  frames (``realtime: false``); at its end the source ends, or starts over with ``loop: true``.
- a **stream** or a **camera** runs until the station stops; when it drops (a read fails, or a stream
  ends), the source reopens it with exponential backoff (``reconnect_min`` doubling up to
  ``reconnect_max``) and logs each attempt, so a camera that comes back is picked up without a restart.

``fps`` caps the frames handed on: at most that many per second, the rest skipped (of the video's own
time for a file, of the wall clock for a stream). Frames are uint8 arrays, RGB (OpenCV's BGR converted),
or one channel with ``color: gray`` or from a camera that delivers one; each is named
``<stem>-<frame number>`` (the file's stem, the stream's last path part, ``cam<index>`` for a camera).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal
from urllib.parse import urlsplit

import numpy as np

from defectlens.inspections.store import utc_now
from defectlens.line.base import Frame, LineError, Result

log = logging.getLogger(__name__)

#: Options a station file's ``video`` source accepts (exactly one of path, url, device), with defaults.
OPTIONS: dict[str, Any] = {
    "path": None,
    "url": None,
    "device": None,
    "fps": None,
    "realtime": True,
    "loop": False,
    "color": "rgb",
    "timeout": 10.0,
    "reconnect_min": 0.5,
    "reconnect_max": 30.0,
}

Kind = Literal["file", "stream", "device"]


def _cv2() -> Any:
    try:
        import cv2
    except ImportError as exc:
        raise LineError(
            f"video sources need OpenCV, which is not installed: pip install 'defectlens[video]' ({exc})"
        ) from exc
    return cv2


@dataclass
class _Pace:
    """Which frames to hand on under an ``fps`` cap, by each frame's time in seconds."""

    fps: float | None
    next_due: float = 0.0

    def due(self, t: float) -> bool:
        if self.fps is None:
            return True
        if t < self.next_due - 1e-6:
            return False
        self.next_due += 1.0 / self.fps
        if self.next_due < t:  # after a stall: one period from now, not a burst to catch up
            self.next_due = t + 1.0 / self.fps
        return True


class VideoSource:
    """A video file, a stream URL or a USB camera index as a :class:`~defectlens.line.base.Source`.

    Args:
        target: a file path, a stream URL (``rtsp://``, ``http://``...) or a camera index.
        fps: hand on at most this many frames per second (None: every frame).
        realtime: a file plays at its own frame rate; False reads as fast as the station takes frames.
        loop: a file starts over at its end instead of ending the source.
        color: ``rgb`` (3 channels) or ``gray`` (1 channel).
        timeout: seconds to open a stream or wait for one frame before it counts as dropped.
        reconnect_min: the first wait before reopening a dropped stream, doubled per failure...
        reconnect_max: ...up to this.
    """

    triggerable = False

    def __init__(
        self,
        target: str | Path | int,
        *,
        fps: float | None = None,
        realtime: bool = True,
        loop: bool = False,
        color: Literal["rgb", "gray"] = "rgb",
        timeout: float = 10.0,
        reconnect_min: float = 0.5,
        reconnect_max: float = 30.0,
    ) -> None:
        self.kind: Kind = "device" if isinstance(target, int) else "stream" if "://" in str(target) else "file"
        self.target = target
        self.endpoint = f"video:{target}"
        self.stem = self._stem(target)
        self.fps, self.realtime, self.loop, self.color = fps, realtime, loop, color
        self.timeout, self.reconnect_min, self.reconnect_max = timeout, reconnect_min, reconnect_max
        self.reconnects = 0  # streams reopened after a drop (for the station's metrics and the tests)
        self._cap: Any = None
        self._count = 0
        self._rate = 25.0

    @staticmethod
    def _stem(target: str | Path | int) -> str:
        if isinstance(target, int):
            return f"cam{target}"
        if "://" in str(target):
            parts = urlsplit(str(target))
            return PurePosixPath(parts.path).stem or parts.hostname or "stream"
        return Path(target).stem

    # -- configuration -----------------------------------------------------------------------------

    @classmethod
    def from_config(cls, options: dict[str, Any], *, station: str, base: Path) -> VideoSource:
        """Build from a station file's ``video`` source (see :data:`OPTIONS`); a relative path from ``base``."""
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise LineError(f"video source: unknown option {unknown[0]!r}; known: {', '.join(OPTIONS)}")
        opts = {**OPTIONS, **options}
        given = [k for k in ("path", "url", "device") if opts.pop(k) is not None]
        if len(given) != 1:
            raise LineError(f"video source: give exactly one of 'path', 'url', 'device' (got {given or 'none'})")
        target = options[given[0]]
        if given[0] == "device" and (isinstance(target, bool) or not isinstance(target, int) or target < 0):
            raise LineError(f"video source: option 'device' must be a camera index (0, 1, ...), not {target!r}")
        if given[0] == "path":
            target = Path(str(target)).expanduser()
            target = target if target.is_absolute() else base / target
        for key in ("fps", "timeout", "reconnect_min", "reconnect_max"):
            value = opts[key]
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
                raise LineError(f"video source: option {key!r} must be a positive number, not {value!r}")
        for key in ("realtime", "loop"):
            if not isinstance(opts[key], bool):
                raise LineError(f"video source: option {key!r} must be true or false, not {opts[key]!r}")
        if opts["color"] not in ("rgb", "gray"):
            raise LineError(f"video source: option 'color' must be 'rgb' or 'gray', not {opts['color']!r}")
        return cls(target, **opts)

    @staticmethod
    def options_from_spec(spec: str) -> dict[str, Any]:
        """The options of the CLI's short form ``video:PATH_OR_URL_OR_DEVICE_INDEX`` (the part after ``video:``)."""
        if spec.isdigit():
            return {"device": int(spec)}
        return {"url": spec} if "://" in spec else {"path": spec}

    # -- the Source interface ------------------------------------------------------------------------

    def open(self) -> None:
        """Open the file, stream or camera; :class:`LineError` naming it when it cannot be opened."""
        if self.kind == "file" and not Path(str(self.target)).is_file():
            raise LineError(f"video file {self.target} not found; check the video source's 'path'")
        self._cap = self._capture()
        if self._cap is None:
            what = {"file": "video file", "stream": "video stream", "device": "camera index"}[self.kind]
            raise LineError(f"{what} {self.target} cannot be opened (not a video OpenCV reads, or nothing there)")
        # A file's frame times come from its own rate (some containers carry none: 25 then).
        self._rate = float(self._cap.get(_cv2().CAP_PROP_FPS)) or 25.0

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        """Yield frames until ``stop`` is set, the file ends (without ``loop``), or forever for a stream."""
        pace, start = _Pace(self.fps), time.monotonic()
        while not stop.is_set():
            image = self._read()
            if image is None:
                if self.kind == "file" and not self.loop:
                    return
                if self.kind == "file":
                    self._cap.set(_cv2().CAP_PROP_POS_FRAMES, 0)
                elif not self._reopen(stop):
                    return
                continue
            number, self._count = self._count, self._count + 1
            t = self._video_time(number, start)
            if not pace.due(t):
                continue
            if self.kind == "file" and self.realtime and stop.wait(max(0.0, start + t - time.monotonic())):
                return
            yield Frame(data=image, name=f"{self.stem}-{number:06d}", source=self.endpoint, captured_utc=utc_now())

    def trigger(self, part_id: str | None = None) -> bool:
        """Video has no trigger: always False."""
        return False

    def done(self, frame: Frame, result: Result) -> None:
        """Nothing to do: a video frame has no file to move."""

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    # -- OpenCV --------------------------------------------------------------------------------------

    def _capture(self) -> Any:
        """A cv2.VideoCapture that is open, or None."""
        cv2 = _cv2()
        if self.kind == "stream":
            ms = int(self.timeout * 1000)
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
            cap = cv2.VideoCapture(str(self.target), cv2.CAP_FFMPEG, params)
        else:
            cap = cv2.VideoCapture(self.target if self.kind == "device" else str(self.target))
        if cap.isOpened():
            return cap
        cap.release()
        return None

    def _read(self) -> np.ndarray | None:
        """The next frame as uint8 RGB or one channel, or None when the read failed or the file ended."""
        ok, image = self._cap.read()
        if not ok or image is None:
            return None
        cv2 = _cv2()
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[:, :, 0]
        if image.ndim == 2:
            return np.ascontiguousarray(image, dtype=np.uint8)
        code = cv2.COLOR_BGR2GRAY if self.color == "gray" else cv2.COLOR_BGR2RGB
        return np.asarray(cv2.cvtColor(image, code), dtype=np.uint8)

    def _video_time(self, number: int, start: float) -> float:
        """A frame's time in seconds: its place in a file (at the file's rate), the wall clock for a stream."""
        return number / self._rate if self.kind == "file" else time.monotonic() - start

    def _reopen(self, stop: threading.Event) -> bool:
        """Reopen a dropped stream or camera with exponential backoff; False when ``stop`` came first."""
        delay = self.reconnect_min
        log.warning("%s dropped; reopening it", self.endpoint)
        while True:
            self.close()
            if stop.wait(delay):
                return False
            self._cap = self._capture()
            if self._cap is not None:
                self.reconnects += 1
                log.warning("%s reopened", self.endpoint)
                return True
            log.warning("%s still unavailable; next try in %g s", self.endpoint, min(delay * 2, self.reconnect_max))
            delay = min(delay * 2, self.reconnect_max)
