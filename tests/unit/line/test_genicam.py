"""The GenICam source on the simulated camera the genicam wheel ships (``viky.cti``: three cameras, serials
0-2, Mono8 or RGBa8, free-running; no TriggerSoftware node, so software trigger is emulated there): free run,
one frame per trigger with its part id, a camera that stops sending is reopened, and the pixel formats."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from tests.require import import_or_missing, missing

import_or_missing("harvesters.core", flag="LINE", reason="the GenICam source needs harvesters (the [camera] extra)")
genicam = import_or_missing(
    "genicam", flag="LINE", reason="the GenICam simulator comes with genicam (the [camera] extra)"
)
VIKY = Path(genicam.__file__).parent / "viky.cti"
if not VIKY.is_file():
    missing("LINE", f"the genicam wheel's simulated camera producer is missing ({VIKY})")

from defectlens.line.base import Frame, LineError  # noqa: E402
from defectlens.line.genicam import GenICamSource, to_array  # noqa: E402
from tests.unit.line.mosquitto import wait_until  # noqa: E402


class Capture:
    """Runs a source's frames() on a thread, as the station's capture thread does, and keeps the frames."""

    def __init__(self, source: GenICamSource) -> None:
        self.source, self.frames, self.stop = source, list[Frame](), threading.Event()
        source.open()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for frame in self.source.frames(self.stop):
            self.frames.append(frame)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "frames() must return once stop is set"
        self.source.close()


@pytest.fixture
def capture() -> Iterator[list[Capture]]:
    opened: list[Capture] = []
    yield opened
    for c in opened:
        if c.thread.is_alive():
            c.close()


def test_free_run_yields_frames_of_the_cameras_size(capture: list[Capture]) -> None:
    source = GenICamSource([VIKY], serial="1", pixel_format="Mono8", features={"Width": 320, "Height": 200})
    assert not source.triggerable
    capture.append(c := Capture(source))
    wait_until(lambda: len(c.frames) >= 5, what="5 free-run frames")
    assert source.trigger("P1") is False
    c.close()
    assert all(
        isinstance(f.data, np.ndarray) and f.data.shape == (200, 320) and f.data.dtype == np.uint8 for f in c.frames
    )
    assert [f.name for f in c.frames[:3]] == ["cam1-000000", "cam1-000001", "cam1-000002"]
    assert {f.source for f in c.frames} == {"genicam:1"} and {f.part_id for f in c.frames} == {None}
    assert any(f.data.any() for f in c.frames), "the simulator draws a ball: frames are not all black"  # type: ignore[union-attr]


def test_rgba8_becomes_rgb(capture: list[Capture]) -> None:
    capture.append(c := Capture(GenICamSource([VIKY], index=2, pixel_format="RGBa8")))
    wait_until(lambda: len(c.frames) >= 1, what="a colour frame")
    c.close()
    assert c.frames[0].data.shape == (400, 400, 3)  # type: ignore[union-attr]


def test_software_trigger_gives_exactly_one_frame_per_trigger_with_its_part_id(capture: list[Capture]) -> None:
    source = GenICamSource([VIKY], index=0, trigger="software", pixel_format="Mono8")
    assert source.trigger("early") is False, "no trigger before open"
    capture.append(c := Capture(source))
    assert source.triggerable and source.emulated_trigger  # the simulator has no TriggerSoftware node
    for n in range(1, 6):
        assert source.trigger(f"P{n}")
        wait_until(lambda n=n: len(c.frames) >= n, what=f"the frame of trigger P{n}")
    time.sleep(1.0)  # the camera streams at 20 fps underneath: nothing else may come through untriggered
    c.close()
    assert [f.part_id for f in c.frames] == ["P1", "P2", "P3", "P4", "P5"]
    assert all(isinstance(f.data, np.ndarray) and f.data.shape == (400, 400) for f in c.frames)


def test_a_camera_that_stops_sending_is_logged_and_reopened(
    capture: list[Capture], caplog: pytest.LogCaptureFixture
) -> None:
    source = GenICamSource([VIKY], index=0, trigger="software", timeout=0.5, reconnect_min=0.1)
    capture.append(c := Capture(source))
    with caplog.at_level(logging.WARNING, logger="defectlens.line.genicam"):
        assert source.trigger("P1")
        wait_until(lambda: len(c.frames) >= 1, what="the first triggered frame")
        source._camera.remote_device.node_map.AcquisitionStop.execute()  # the camera goes silent underneath
        assert source.trigger("P2")
        wait_until(lambda: source.reconnects >= 1, what="the camera reopened")
        wait_until(lambda: source.trigger("P3"), what="the reopened camera taking a trigger")
        wait_until(lambda: len(c.frames) >= 3, what="the frame after the reconnect")
    c.close()
    assert [f.part_id for f in c.frames] == ["P1", "P2", "P3"]
    assert c.frames[1].data == b"", "the trigger whose frame never came yields an empty frame: an error result"
    assert isinstance(c.frames[2].data, np.ndarray)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("genicam:0" in e and "no frame within 0.5 s" in e for e in errors), errors


def test_bad_producer_or_camera_is_a_line_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(LineError, match=f"GenTL producer {tmp_path / 'none.cti'} not found"):
        GenICamSource([tmp_path / "none.cti"]).open()
    source = GenICamSource([VIKY], serial="42")
    with pytest.raises(LineError, match="no camera with serial 42 \\(found: 0, 1, 2\\)"):
        source.open()
    source.close()
    source = GenICamSource([VIKY], features={"NoSuchFeature": 1})
    with pytest.raises(LineError, match="NoSuchFeature"):
        source.open()
    source.close()


def test_from_config_and_the_cli_short_form(tmp_path: Path) -> None:
    source = GenICamSource.from_config(
        {"cti": "sdk/p.cti", "serial": 7, "trigger": "software"}, station="s", base=tmp_path
    )
    assert source.cti == [tmp_path / "sdk" / "p.cti"] and source.serial == "7" and source.triggerable
    assert source.endpoint == "genicam:7"
    with pytest.raises(LineError, match="'cti'"):
        GenICamSource.from_config({}, station="s", base=tmp_path)
    with pytest.raises(LineError, match="'trigger'"):
        GenICamSource.from_config({"cti": "p.cti", "trigger": "hardware"}, station="s", base=tmp_path)
    with pytest.raises(LineError, match="'serail'"):
        GenICamSource.from_config({"cti": "p.cti", "serail": "1"}, station="s", base=tmp_path)
    assert GenICamSource.options_from_spec("/opt/sdk/p.cti") == {"cti": "/opt/sdk/p.cti"}


def test_pixel_formats_to_arrays() -> None:
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    mosaic = np.zeros((4, 6), np.uint8)  # BayerRG8: R G / G B from the top left
    mosaic[0::2, 0::2], mosaic[0::2, 1::2], mosaic[1::2, 0::2], mosaic[1::2, 1::2] = 200, 100, 100, 50
    assert np.array_equal(to_array(mosaic.ravel(), width=6, height=4, pixel_format="BayerRG8")[1:3, 1:5], rgb[1:3, 1:5])
    mosaic_bg = np.roll(np.roll(mosaic, 1, axis=0), 1, axis=1)  # BayerBG8: B G / G R
    assert np.array_equal(
        to_array(mosaic_bg.ravel(), width=6, height=4, pixel_format="BayerBG8")[1:3, 1:5], rgb[1:3, 1:5]
    )
    bgra = np.concatenate([rgb[..., ::-1], np.full((4, 6, 1), 255, np.uint8)], axis=2)
    assert np.array_equal(to_array(bgra.ravel(), width=6, height=4, pixel_format="BGRa8"), rgb)
    assert np.array_equal(to_array(rgb.ravel(), width=6, height=4, pixel_format="RGB8"), rgb)
    assert to_array(np.arange(24, dtype=np.uint8), width=6, height=4, pixel_format="Mono8").shape == (4, 6)
    with pytest.raises(LineError, match="Mono12"):
        to_array(np.zeros(48, np.uint8), width=6, height=4, pixel_format="Mono12")


class StandInNodes:
    """A camera's node map with the trigger nodes the simulator lacks (a stand-in: no GenTL simulator we can
    install has TriggerSoftware), recording what the source sets and executes."""

    def __init__(self) -> None:
        self.set: dict[str, object] = {}
        self.fired = 0
        self.TriggerSoftware = type("Command", (), {"execute": lambda _: setattr(self, "fired", self.fired + 1)})()
        self.PixelFormat = type("Node", (), {"value": "Mono8"})()

    def has_node(self, name: str) -> bool:
        return name in ("TriggerSelector", "TriggerMode", "TriggerSource", "TriggerSoftware", "PixelFormat")

    def __getattr__(self, name: str) -> object:
        nodes = self

        class Node:
            def __setattr__(self, key: str, value: object) -> None:
                nodes.set[name] = value

        return Node()


def test_a_camera_with_trigger_nodes_is_put_in_software_trigger_and_fired_once_per_frame() -> None:
    source = GenICamSource([VIKY], trigger="software")
    nodes = StandInNodes()
    source._configure(nodes)
    assert nodes.set == {"TriggerSelector": "FrameStart", "TriggerMode": "On", "TriggerSource": "Software"}
    assert not source.emulated_trigger
    free = StandInNodes()
    GenICamSource([VIKY])._configure(free)
    assert free.set == {"TriggerSelector": "FrameStart", "TriggerMode": "Off"}

    component = SimpleNamespace(data=np.zeros(12, np.uint8), width=4, height=3, data_format="Mono8")

    @contextmanager
    def fetch(timeout: float) -> Iterator[SimpleNamespace]:
        yield SimpleNamespace(payload=SimpleNamespace(components=[component]))

    source._camera = SimpleNamespace(remote_device=SimpleNamespace(node_map=nodes), fetch=fetch)
    frames = [source._grab("A"), source._grab("B")]
    assert nodes.fired == 2 and [f.part_id for f in frames] == ["A", "B"]
