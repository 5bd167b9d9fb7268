"""Frames from a GenICam camera (GigE Vision, USB3 Vision) through harvesters and a GenTL producer
(``[camera]`` extra: ``harvesters``, ``genicam``).

The station file names the producer (``cti``: the ``.cti`` file of the camera maker's SDK, one or a
list) and the camera (``serial``, or ``index`` in the producer's list; the first camera by default). Two
modes:

- ``trigger: free_run`` (default): the camera streams; every frame is handed on.
- ``trigger: software``: the camera waits; :meth:`GenICamSource.trigger` (a PLC's Trigger through the
  station) fires one acquisition and the frame carries the trigger's part id: exactly one frame per
  trigger. The camera's ``TriggerMode=On``, ``TriggerSource=Software`` and ``TriggerSoftware`` command are
  used where it has them. A camera without them (the simulated camera the ``genicam`` wheel ships,
  ``viky.cti``) streams, and a trigger takes the next frame the camera delivers after it (the frames in
  between are discarded): said once in the log at start.

Pixel formats Mono8 (one channel), RGB8/BGR8/RGBa8/BGRa8 (RGB) and the 8-bit Bayer formats (demosaiced
with OpenCV, the ``[video]`` extra) become uint8 arrays; ``pixel_format`` sets the camera's PixelFormat at start. Other
camera features (exposure, gain...) go in ``features``, set by name before acquisition starts.

Every fetch waits at most ``timeout`` seconds: a camera that sends nothing for that long, or that
disappears, is logged as an error naming it and reopened with exponential backoff (``reconnect_min``
doubling up to ``reconnect_max``) until it answers or the station stops; a trigger whose frame never came
yields a frame with empty data and the trigger's part id, so that part gets an error result, not silence.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from defectlens.inspections.store import utc_now
from defectlens.line.base import Frame, LineError, Result

log = logging.getLogger(__name__)

#: Options a station file's ``genicam`` source accepts, with their defaults (``cti`` is required).
OPTIONS: dict[str, Any] = {
    "cti": None,
    "serial": None,
    "index": None,
    "trigger": "free_run",
    "pixel_format": None,
    "features": {},
    "timeout": 5.0,
    "reconnect_min": 0.5,
    "reconnect_max": 30.0,
}

TriggerMode = Literal["free_run", "software"]

#: GenICam (PFNC) Bayer formats -> OpenCV's demosaicing code name (named by the pattern's first two rows).
BAYER = {"BayerRG8": "COLOR_BayerRGGB2RGB", "BayerGR8": "COLOR_BayerGRBG2RGB",
         "BayerGB8": "COLOR_BayerGBRG2RGB", "BayerBG8": "COLOR_BayerBGGR2RGB"}  # fmt: skip
#: Packed colour formats -> (channels, channel order to RGB).
PACKED = {"RGB8": (3, [0, 1, 2]), "BGR8": (3, [2, 1, 0]), "RGBa8": (4, [0, 1, 2]), "BGRa8": (4, [2, 1, 0])}


class _CameraError(Exception):
    """A fetch that timed out or a camera that went away (becomes a log line and a reconnect)."""


def _harvester() -> Any:
    try:
        from harvesters.core import Harvester
    except ImportError as exc:
        raise LineError(
            f"GenICam cameras need harvesters and genicam: pip install 'defectlens[camera]' ({exc})"
        ) from exc
    return Harvester()


def _genicam_errors() -> tuple[type[BaseException], ...]:
    from genicam import genapi, gentl

    return (gentl.GenericException, genapi.GenericException)


def to_array(data: np.ndarray, *, width: int, height: int, pixel_format: str) -> np.ndarray:
    """One buffer's pixels as an HxW (Mono8) or HxWx3 RGB uint8 array, copied out of the camera's buffer."""
    flat = np.asarray(data, dtype=np.uint8).reshape(-1)
    if pixel_format == "Mono8":
        return flat[: width * height].reshape(height, width).copy()
    if pixel_format in PACKED:
        channels, order = PACKED[pixel_format]
        image = flat[: width * height * channels].reshape(height, width, channels)
        return np.ascontiguousarray(image[:, :, order])
    if pixel_format in BAYER:
        try:
            import cv2
        except ImportError as exc:
            raise LineError(
                f"pixel format {pixel_format} is demosaiced with OpenCV, which is not installed: "
                f"pip install 'defectlens[video]', or set 'pixel_format' to Mono8 or an RGB format ({exc})"
            ) from exc
        return np.asarray(
            cv2.cvtColor(flat[: width * height].reshape(height, width), getattr(cv2, BAYER[pixel_format]))
        )
    known = ", ".join(["Mono8", *PACKED, *BAYER])
    raise LineError(f"pixel format {pixel_format} is not supported; set the 'pixel_format' option to one of {known}")


class GenICamSource:
    """A GenICam camera through a GenTL producer as a :class:`~defectlens.line.base.Source`.

    Args:
        cti: the GenTL producer file(s) (``.cti``).
        serial: the camera's serial number; None: by ``index``.
        index: the camera's place in the producer's list (0 when neither is given).
        trigger: ``free_run`` or ``software``.
        pixel_format: set the camera's PixelFormat at start (None: leave it).
        features: more camera features to set at start, by GenICam name (``{"ExposureTime": 5000}``).
        timeout: the longest wait for one frame (seconds) before the camera counts as gone.
        reconnect_min: the first wait before reopening a camera that went away, doubled per failure...
        reconnect_max: ...up to this.
    """

    #: Triggers waiting for the capture thread, at most; trigger() answers False past this (busy).
    max_pending_triggers = 16

    def __init__(
        self,
        cti: Sequence[Path],
        *,
        serial: str | None = None,
        index: int | None = None,
        trigger: TriggerMode = "free_run",
        pixel_format: str | None = None,
        features: dict[str, Any] | None = None,
        timeout: float = 5.0,
        reconnect_min: float = 0.5,
        reconnect_max: float = 30.0,
    ) -> None:
        self.cti = [Path(p) for p in cti]
        self.serial, self.index = serial, index
        self.endpoint = f"genicam:{serial}" if serial is not None else f"genicam:{index or 0}"
        self.stem = f"cam{serial}" if serial is not None else f"cam{index or 0}"
        self.mode, self.triggerable = trigger, trigger == "software"
        self.pixel_format, self.features = pixel_format, dict(features or {})
        self.timeout, self.reconnect_min, self.reconnect_max = timeout, reconnect_min, reconnect_max
        self.emulated_trigger = False  # set at open: the camera has no TriggerSoftware
        self.reconnects = 0
        self._harvester: Any = None
        self._camera: Any = None
        self._triggers: queue.Queue[str | None] = queue.Queue(maxsize=self.max_pending_triggers)
        self._count = 0

    # -- configuration -----------------------------------------------------------------------------

    @classmethod
    def from_config(cls, options: dict[str, Any], *, station: str, base: Path) -> GenICamSource:
        """Build from a station file's ``genicam`` source (see :data:`OPTIONS`); relative paths from ``base``."""
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise LineError(f"genicam source: unknown option {unknown[0]!r}; known: {', '.join(OPTIONS)}")
        opts = {**OPTIONS, **options}
        cti = opts.pop("cti")
        paths = [cti] if isinstance(cti, (str, Path)) else cti
        if not paths or not isinstance(paths, list) or not all(isinstance(p, (str, Path)) for p in paths):
            raise LineError("genicam source: option 'cti' must name the GenTL producer file (.cti), or a list of them")
        opts["cti"] = [p if p.is_absolute() else base / p for p in (Path(str(c)).expanduser() for c in paths)]
        if opts["trigger"] not in ("free_run", "software"):
            raise LineError(
                f"genicam source: option 'trigger' must be 'free_run' or 'software', not {opts['trigger']!r}"
            )
        index = opts["index"]
        if index is not None and (isinstance(index, bool) or not isinstance(index, int) or index < 0):
            raise LineError(f"genicam source: option 'index' must be a camera's place (0, 1, ...), not {index!r}")
        if opts["serial"] is not None:
            opts["serial"] = str(opts["serial"])
        if not isinstance(opts["features"], dict):
            raise LineError(
                f"genicam source: option 'features' must map feature names to values, not {opts['features']!r}"
            )
        for key in ("timeout", "reconnect_min", "reconnect_max"):
            value = opts[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise LineError(f"genicam source: option {key!r} must be a positive number, not {value!r}")
        return cls(opts.pop("cti"), **opts)

    @staticmethod
    def options_from_spec(spec: str) -> dict[str, Any]:
        """The options of the CLI's short form ``genicam:CTI_PATH`` (the part after ``genicam:``)."""
        return {"cti": spec}

    # -- the Source interface ------------------------------------------------------------------------

    def open(self) -> None:
        """Load the producer(s), open the camera, configure it and start acquisition (:class:`LineError` if not)."""
        for path in self.cti:
            if not path.is_file():
                raise LineError(f"GenTL producer {path} not found; set the genicam source's 'cti' to the .cti file")
        self._harvester = _harvester()
        for path in self.cti:
            self._harvester.add_file(str(path), check_existence=True, check_validity=True)
        self._connect()
        if self.emulated_trigger:
            log.warning(
                "%s has no TriggerSoftware: it streams, and each trigger takes the next frame it delivers",
                self.endpoint,
            )

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        """Yield frames until ``stop`` is set: every frame (free run) or one per trigger (software)."""
        while not stop.is_set():
            part_id: str | None = None
            if self.triggerable:
                try:
                    part_id = self._triggers.get(timeout=0.1)
                except queue.Empty:
                    continue
            try:
                yield self._grab(part_id)
            except _CameraError as exc:
                log.error("%s: %s; reopening the camera", self.endpoint, exc)
                if self.triggerable:  # this part gets an error result, not silence
                    yield replace(self._frame(b"", part_id), error=f"{self.endpoint}: {exc}")
                if not self._reopen(stop):
                    return

    def trigger(self, part_id: str | None = None) -> bool:
        """Queue one acquisition (software mode); False in free run, before open, or with too many pending."""
        if not self.triggerable or self._camera is None:
            return False
        try:
            self._triggers.put_nowait(part_id)
        except queue.Full:
            return False
        return True

    def done(self, frame: Frame, result: Result) -> None:
        """Nothing to do: a camera frame has no file to move."""

    def close(self) -> None:
        self._disconnect()
        if self._harvester is not None:
            self._harvester.reset()
            self._harvester = None

    # -- harvesters ----------------------------------------------------------------------------------

    def _connect(self) -> None:
        """Find the camera, open it, configure it and start it."""
        self._harvester.update()
        devices = list(self._harvester.device_info_list)
        if not devices:
            raise LineError(f"{self.endpoint}: no camera found through {', '.join(map(str, self.cti))}")
        if self.serial is not None:
            chosen = [i for i, d in enumerate(devices) if str(d.serial_number) == self.serial]
            if not chosen:
                serials = ", ".join(str(d.serial_number) for d in devices)
                raise LineError(f"{self.endpoint}: no camera with serial {self.serial} (found: {serials})")
            position = chosen[0]
        else:
            position = self.index or 0
            if position >= len(devices):
                raise LineError(f"{self.endpoint}: camera index {position} out of range ({len(devices)} found)")
        try:
            self._camera = self._harvester.create(position)
            self._configure(self._camera.remote_device.node_map)
            self._camera.start()
        except _genicam_errors() as exc:
            self._disconnect()
            raise LineError(f"{self.endpoint}: cannot open the camera ({exc})") from exc

    def _configure(self, nodes: Any) -> None:
        settings = dict(self.features)
        if self.pixel_format is not None:
            settings = {"PixelFormat": self.pixel_format, **settings}
        has_trigger = nodes.has_node("TriggerMode") and nodes.has_node("TriggerSoftware")
        if has_trigger and nodes.has_node("TriggerSelector"):
            settings["TriggerSelector"] = "FrameStart"
        if has_trigger:
            settings["TriggerMode"] = "On" if self.triggerable else "Off"
            if self.triggerable:
                settings["TriggerSource"] = "Software"
        self.emulated_trigger = self.triggerable and not has_trigger
        errors: tuple[type[BaseException], ...] = (AttributeError, *_genicam_errors())
        for name, value in settings.items():
            try:
                getattr(nodes, name).value = value
            except errors as exc:
                raise LineError(f"{self.endpoint}: cannot set the camera's {name} to {value!r} ({exc})") from exc
        fmt = str(nodes.PixelFormat.value) if nodes.has_node("PixelFormat") else "Mono8"
        if fmt not in ("Mono8", *PACKED, *BAYER):
            known = ", ".join(["Mono8", *PACKED, *BAYER])
            raise LineError(
                f"{self.endpoint}: pixel format {fmt} is not supported; set 'pixel_format' to one of {known}"
            )

    def _grab(self, part_id: str | None) -> Frame:
        """One frame: fire the trigger (software mode), then fetch with the timeout."""
        try:
            if self.triggerable and self.emulated_trigger:
                self._flush()
            elif self.triggerable:
                self._camera.remote_device.node_map.TriggerSoftware.execute()
            with self._camera.fetch(timeout=self.timeout) as buffer:
                component = buffer.payload.components[0]
                image = to_array(
                    component.data, width=component.width, height=component.height, pixel_format=component.data_format
                )
        except _genicam_errors() as exc:
            kind = "no frame" if type(exc).__name__ == "TimeoutException" else "the camera failed"
            raise _CameraError(f"{kind} within {self.timeout:g} s ({type(exc).__name__}: {exc})") from exc
        return self._frame(image, part_id)

    def _flush(self) -> None:
        """Drop the frames the camera delivered before the trigger (emulated trigger)."""
        while (buffer := self._camera.try_fetch(timeout=0.001)) is not None:
            buffer.queue()

    def _frame(self, data: np.ndarray | bytes, part_id: str | None) -> Frame:
        number, self._count = self._count, self._count + 1
        return Frame(
            data=data, name=f"{self.stem}-{number:06d}", source=self.endpoint, captured_utc=utc_now(), part_id=part_id
        )

    def _disconnect(self) -> None:
        camera, self._camera = self._camera, None
        if camera is not None:
            try:
                camera.stop()
                camera.destroy()
            except _genicam_errors() as exc:  # a camera that is gone cannot be stopped cleanly
                log.warning("%s: closing the camera: %s", self.endpoint, exc)

    def _reopen(self, stop: threading.Event) -> bool:
        """Reopen the camera with exponential backoff; False when ``stop`` came first."""
        self._disconnect()
        delay = self.reconnect_min
        while not stop.wait(delay):
            try:
                self._connect()
            except LineError as exc:
                delay = min(delay * 2, self.reconnect_max)
                log.warning("%s; next try in %g s", exc, delay)
                continue
            self.reconnects += 1
            log.warning("%s reopened", self.endpoint)
            return True
        return False
