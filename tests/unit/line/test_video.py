"""The video source on a real video file written from ELPV cells, and on a real HTTP stream that drops and
refuses reconnects for a while: frame count, fps cap, loop, colour, errors that name the file."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from tests.require import import_or_missing

cv2 = import_or_missing("cv2", flag="LINE", reason="the video source needs OpenCV (the [video] extra)")
import_or_missing("elpv_dataset", flag="EXTRAS", reason="the test video is made of ELPV cells (the [train] extra)")

from defectlens.line.base import Frame, LineError  # noqa: E402
from defectlens.line.video import VideoSource  # noqa: E402
from tests.unit.line.mosquitto import wait_until  # noqa: E402

FRAMES, RATE = 12, 10.0


@pytest.fixture(scope="module")
def cells() -> list[np.ndarray]:
    """Four ELPV cells (300x300 grayscale), as BGR for the writer."""
    root = Path(str(resources.files("elpv_dataset") / "data" / "images"))
    paths = sorted(root.glob("*.png"))[:400:100]
    return [cv2.cvtColor(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE), cv2.COLOR_GRAY2BGR) for p in paths]


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory, cells: list[np.ndarray]) -> Path:
    """12 frames at 10 fps, MJPEG in AVI (OpenCV's own encoder: present in every build): cell k % 4 in frame k."""
    path = tmp_path_factory.mktemp("video") / "line.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), RATE, (300, 300))
    assert writer.isOpened()
    for k in range(FRAMES):
        writer.write(cells[k % 4])
    writer.release()
    return path


def nearest_cell(frame: np.ndarray, cells: list[np.ndarray]) -> int:
    gray = frame if frame.ndim == 2 else frame[:, :, 0]
    return int(np.argmin([np.abs(gray.astype(int) - c[:, :, 0].astype(int)).mean() for c in cells]))


def read_all(source: VideoSource, limit: int = 1000) -> list[Frame]:
    source.open()
    stop = threading.Event()
    frames: list[Frame] = []
    try:
        for frame in source.frames(stop):
            frames.append(frame)
            if len(frames) >= limit:
                stop.set()
    finally:
        source.close()
    return frames


def test_a_video_file_reads_back_every_frame_in_order_as_rgb_uint8(video: Path, cells: list[np.ndarray]) -> None:
    frames = read_all(VideoSource(video, realtime=False))
    assert [f.name for f in frames] == [f"line-{k:06d}" for k in range(FRAMES)]
    assert all(f.source == f"video:{video}" for f in frames)
    for k, frame in enumerate(frames):
        assert isinstance(frame.data, np.ndarray) and frame.data.dtype == np.uint8 and frame.data.shape == (300, 300, 3)
        assert nearest_cell(frame.data, cells) == k % 4
        assert np.abs(frame.data[:, :, 0].astype(int) - cells[k % 4][:, :, 0]).mean() < 8  # MJPEG is lossy
    assert frames[0].captured_utc <= frames[-1].captured_utc


def test_realtime_playback_still_hands_on_every_frame(video: Path) -> None:
    assert len(read_all(VideoSource(video))) == FRAMES  # paced at the file's 10 fps; no duration asserted


def test_the_fps_cap_skips_frames_evenly(video: Path) -> None:
    names = [f.name for f in read_all(VideoSource(video, fps=5, realtime=False))]
    assert names == [f"line-{k:06d}" for k in range(0, FRAMES, 2)]
    names = [f.name for f in read_all(VideoSource(video, fps=2.5, realtime=False))]
    assert names == ["line-000000", "line-000004", "line-000008"]


def test_loop_starts_over_and_gray_keeps_one_channel(video: Path, cells: list[np.ndarray]) -> None:
    frames = read_all(VideoSource(video, realtime=False, loop=True, color="gray"), limit=30)
    assert len(frames) == 30 and len({f.name for f in frames}) == 30
    assert all(isinstance(f.data, np.ndarray) and f.data.shape == (300, 300) for f in frames)
    assert [nearest_cell(f.data, cells) for f in frames] == [k % FRAMES % 4 for k in range(30)]  # type: ignore[arg-type]


def test_a_missing_or_unreadable_file_is_a_line_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.avi"
    with pytest.raises(LineError, match=f"video file {missing} not found"):
        VideoSource(missing).open()
    junk = tmp_path / "junk.avi"
    junk.write_text("not a video")
    with pytest.raises(LineError, match=f"video file {junk} cannot be opened"):
        VideoSource(junk).open()


def test_from_config_and_the_cli_short_form(tmp_path: Path) -> None:
    source = VideoSource.from_config({"path": "in/line.avi", "fps": 5}, station="s", base=tmp_path)
    assert source.target == tmp_path / "in" / "line.avi" and source.kind == "file" and source.fps == 5
    assert VideoSource.from_config({"device": 0}, station="s", base=tmp_path).endpoint == "video:0"
    with pytest.raises(LineError, match="exactly one of"):
        VideoSource.from_config({"path": "a.avi", "url": "rtsp://cam/1"}, station="s", base=tmp_path)
    with pytest.raises(LineError, match="'fsp'"):
        VideoSource.from_config({"path": "a.avi", "fsp": 5}, station="s", base=tmp_path)
    with pytest.raises(LineError, match="'fps'"):
        VideoSource.from_config({"path": "a.avi", "fps": 0}, station="s", base=tmp_path)
    assert VideoSource.options_from_spec("2") == {"device": 2}
    assert VideoSource.options_from_spec("rtsp://10.0.0.9/stream1") == {"url": "rtsp://10.0.0.9/stream1"}
    assert VideoSource.options_from_spec("clips/line.mp4") == {"path": "clips/line.mp4"}


class FlakyStream(http.server.SimpleHTTPRequestHandler):
    """Serves the video on the first request, refuses the next two (503: the camera is rebooting), then
    serves it again: a stream that drops at its end and comes back only after failed reconnects."""

    requests: list[int]

    def do_GET(self) -> None:
        self.requests.append(self.requests[-1] + 1 if self.requests else 1)
        if self.requests[-1] in (2, 3):
            self.send_error(503, "rebooting")
            return
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def flaky_stream(video: Path) -> Iterator[tuple[str, list[int]]]:
    requests: list[int] = []
    handler = type("Handler", (FlakyStream,), {"requests": requests})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(video.parent)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{video.name}", requests
    server.shutdown()
    thread.join()


def test_a_dropped_stream_reopens_with_backoff_and_goes_on(
    flaky_stream: tuple[str, list[int]], cells: list[np.ndarray]
) -> None:
    url, requests = flaky_stream
    source = VideoSource(url, reconnect_min=0.1, reconnect_max=0.4, timeout=10)
    frames: list[Frame] = []
    stop = threading.Event()

    def capture() -> None:
        for frame in source.frames(stop):
            frames.append(frame)
            if len(frames) == 2 * FRAMES:
                stop.set()

    source.open()
    thread = threading.Thread(target=capture, daemon=True)
    thread.start()
    try:
        wait_until(lambda: len(frames) >= 2 * FRAMES, what="the frames of two connections")
    finally:
        stop.set()
        thread.join(timeout=60)
        source.close()
    assert len(requests) >= 4, "the source must have retried through the refused reconnects"
    assert source.reconnects == 1
    assert [f.name for f in frames] == [f"line-{k:06d}" for k in range(2 * FRAMES)]
    assert [nearest_cell(f.data, cells) for f in frames] == [k % FRAMES % 4 for k in range(2 * FRAMES)]  # type: ignore[arg-type]
