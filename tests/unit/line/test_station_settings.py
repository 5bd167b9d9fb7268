"""The station file's ``drift:`` section and ``store_images:``: the drift watch runs with the window the file
gives (the station's gauge says so) or not at all; a bad value exits 2 naming the key and the value; and
``defectlens line --store-images`` overrides the file's folder on a real run (a video file, to its end)."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from defectlens.cli import main
from defectlens.inspections import ImageStore, InspectionLog
from defectlens.line.base import LineError
from defectlens.line.config import load_station_file, open_station
from tests.require import import_or_missing

import_or_missing("watchdog", flag="LINE", reason="the station files here use the hot folder (the [line] extra)")
import_or_missing("prometheus_client", flag="SERVE", reason="station metrics use prometheus_client (the [serve] extra)")

FOLDER = "{type: folder, path: in, after: leave}"


def station_file(tmp_path: Path, model: Path | str, extra: str, source: str = FOLDER) -> Path:
    (tmp_path / "in").mkdir(exist_ok=True)
    path = tmp_path / "station.yaml"
    path.write_text(f"station: s\nmodel: {model}\nlog: log.sqlite\nsource: {source}\n{extra}")
    return path


def window_gauge(path: Path) -> float:
    run = open_station(load_station_file(path))
    try:
        assert run.metrics is not None
        text = run.metrics.render().decode()
    finally:
        run.log.close()
    (line,) = [ln for ln in text.splitlines() if ln.startswith("defectlens_line_drift_window_size ")]
    return float(line.split()[1])


def test_the_drift_section_sets_the_stations_window(tmp_path, constant_bundle) -> None:
    model = constant_bundle("defect_last")
    metrics = "metrics: {port: 0, host: 127.0.0.1}\n"
    path = station_file(tmp_path, model, metrics + "drift: {window: 20, psi_alarm: 0.5, share_alpha: 1.0e-4}\n")
    config = load_station_file(path)
    assert (config.drift.window, config.drift.psi_alarm, config.drift.share_alpha) == (20, 0.5, 1e-4)
    assert window_gauge(path) == 20.0
    assert window_gauge(station_file(tmp_path, model, metrics)) == 100.0  # no section: the watch's defaults
    assert window_gauge(station_file(tmp_path, model, metrics + "drift: {enabled: false}\n")) == 0.0  # off


def test_a_short_window_checks_agreement_on_what_it_holds_and_1e_6_reads_as_a_number(tmp_path) -> None:
    config = load_station_file(station_file(tmp_path, "m.dlens", "drift: {window: 12, share_alpha: 1e-4}\n"))
    assert (config.drift.window, config.drift.min_verdicts, config.drift_watch) == (12, 12, True)
    assert config.drift.share_alpha == 1e-4  # YAML reads 1e-4 (no dot) as text


@pytest.mark.parametrize(
    ("drift", "named"),
    [
        ("{window: 5}", "drift.window: drift watch: window 5 must be an integer 10-100000, got 5"),
        ("{window: 20.5}", "drift.window: must be a whole number, got 20.5"),
        ("{psi_alarm: 0}", "drift.psi_alarm: drift watch: psi_alarm 0 must be in (0, 10], got 0"),
        ("{share_alpha: high}", "drift.share_alpha: must be a number, got 'high'"),
        ("{enabled: 1}", "drift.enabled: must be true or false, got 1"),
        ("{psi: 1.0}", "drift.psi: unknown key (keys: window, psi_alarm, share_alpha, enabled), got 1.0"),
        ("[100]", "drift: must be a mapping"),
    ],
)
def test_a_bad_drift_value_exits_2_naming_it(tmp_path, constant_bundle, capsys, drift, named) -> None:
    path = station_file(tmp_path, constant_bundle("defect_last"), f"drift: {drift}\n")
    assert main(["line", "--check", str(path)]) == 2
    assert f"{path}: {named}" in capsys.readouterr().err


def test_store_images_is_checked_and_taken_from_the_files_folder(tmp_path, constant_bundle, capsys) -> None:
    with pytest.raises(LineError, match=r"store_images: must be a folder path, got \[1\]"):
        load_station_file(station_file(tmp_path, "m.dlens", "store_images: [1]\n"))
    (tmp_path / "taken").write_text("a file, not a folder")
    path = station_file(tmp_path, constant_bundle("defect_last"), "store_images: taken\n")
    assert main(["line", "--check", str(path)]) == 2
    assert f"{path}: store_images {tmp_path / 'taken'}: cannot create the folder" in capsys.readouterr().err


def test_the_command_line_store_overrides_the_files_on_a_run_to_the_videos_end(tmp_path, constant_bundle) -> None:
    cv2 = import_or_missing("cv2", flag="LINE", reason="the video source needs OpenCV (the [video] extra)")
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (32, 24))
    for seed in range(3):
        writer.write(np.random.default_rng(seed).integers(0, 256, (24, 32, 3), dtype=np.uint8))
    writer.release()
    source = "{type: video, path: clip.avi, realtime: false}"
    path = station_file(tmp_path, constant_bundle("defect_last"), "store_images: from-file\n", source)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:  # the command installs its own signal handlers: put pytest's back
        args = ["line", "--config", str(path), "--store-images", str(tmp_path / "cli"), "--event-log", "/dev/null"]
        assert main(args) == 0
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    with InspectionLog(tmp_path / "log.sqlite") as log:
        rows = log.query()
    assert len(rows) == 3 and not (tmp_path / "from-file").exists()
    store = ImageStore(tmp_path / "cli")
    for row in rows:  # the camera's pixels as PNG, the size the row says
        assert row.image_path is not None and row.image_path.endswith(".png")
        with Image.open(store.path(row.image_path)) as im:
            assert (im.format, im.size) == ("PNG", (row.width, row.height)) == ("PNG", (32, 24))
