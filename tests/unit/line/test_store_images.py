"""A station that keeps its images (``store_images:``): each judged frame's image is stored before its row is
logged and the row names it, so operator verdicts on a line's log become a dataset (``workflows.from_log``); a
camera's pixels are kept as a lossless PNG; a store that fails costs no inspection (the row is logged without
its image, counted, and a ``store_error`` event says why)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from defectlens.inspections import ImageStore, InspectionLog
from defectlens.line.config import load_station_file, open_station
from defectlens.line.station import Station, StationEvent, StationMetrics
from defectlens.workflows.from_log import LogImportConfig, build_from_log
from tests.helpers import scripted_predictor
from tests.require import import_or_missing
from tests.unit.line.station_helpers import GOOD, FeedSource, part_bytes, wait_for
from tests.unit.workflows.test_from_log import png


def station_file(tmp_path: Path, model: Path, extra: str = "") -> Path:
    (tmp_path / "in").mkdir(exist_ok=True)
    path = tmp_path / "station.yaml"
    path.write_text(
        f"station: line-7\nmodel: {model}\nlog: log.sqlite\nsource: {{type: folder, path: in, after: leave}}\n{extra}"
    )
    return path


def test_a_hot_folder_line_keeps_its_images_and_its_reviewed_rows_become_a_dataset(tmp_path, constant_bundle) -> None:
    import_or_missing("watchdog", flag="LINE", reason="the hot folder needs watchdog (the [line] extra)")
    images = {f"p{i}.png": png(10 + i) for i in range(3)}
    config = load_station_file(station_file(tmp_path, constant_bundle("defect_last"), "store_images: kept\n"))
    assert config.store_images == tmp_path / "kept"  # relative to the station file, as the other paths
    for name, data in images.items():
        (tmp_path / "in" / name).write_bytes(data)
    with open_station(config) as run:
        wait_for(lambda: run.station.stats.published == 3, "the three results")
        run.station.stop()
    store = ImageStore(tmp_path / "kept")
    with InspectionLog(config.log) as log:
        rows = sorted(log.query(), key=lambda r: r.client_name)
        assert [r.status for r in rows] == ["ok"] * 3
        for row in rows:  # the bytes as the folder held them, under their hash, as PNG
            assert row.image_path is not None and row.image_path.endswith(".png")
            assert store.path(row.image_path).read_bytes() == images[row.client_name]
        decided = rows[0].prediction
        other = "ok" if decided == "defect" else "defect"
        log.set_verdict(rows[0].id, "confirmed", operator="ana")
        log.set_verdict(rows[1].id, "overridden", label=other, operator="ben")
    built = build_from_log(LogImportConfig(log=config.log, images=tmp_path / "kept"))
    labels = {r.meta["inspection_id"]: (r.label, r.meta["station"]) for r in built.manifest.records}
    assert labels == {rows[0].id: (decided, "line-7"), rows[1].id: (other, "line-7")}  # the third: unreviewed


def run_feed(
    frames: list[np.ndarray | bytes], store: ImageStore, log: InspectionLog, metrics: StationMetrics | None = None
) -> tuple[Station, list[StationEvent]]:
    events: list[StationEvent] = []
    source = FeedSource()
    station = Station(source=source, predictor=scripted_predictor(), log=log, name="s", store=store,
                      metrics=metrics, on_event=events.append)  # fmt: skip
    with station:
        for i, frame in enumerate(frames):
            source.put(frame, name=f"f{i}")
        wait_for(lambda: station.stats.published == len(frames), "every result")
    assert station.stats.results == {"ok": len(frames)}
    return station, events


def test_a_cameras_pixels_are_kept_as_a_lossless_png(tmp_path) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    store = ImageStore(tmp_path / "kept")
    with InspectionLog(tmp_path / "log.sqlite") as log:
        run_feed([pixels], store, log)
        (row,) = log.query()
    assert row.image_path is not None and row.image_path.endswith(".png")
    with Image.open(io.BytesIO(store.path(row.image_path).read_bytes())) as im:
        assert im.format == "PNG" and np.array_equal(np.asarray(im), pixels)


def test_a_store_that_fails_costs_no_inspection(tmp_path) -> None:
    import_or_missing("prometheus_client", flag="SERVE", reason="metrics use prometheus_client (the [serve] extra)")
    from defectlens.line.metrics import LineMetrics

    metrics = LineMetrics("s")
    store = ImageStore(tmp_path / "kept")
    store.folder.rmdir()
    store.folder.write_text("a file where the folder was: every write fails")
    with InspectionLog(tmp_path / "log.sqlite") as log:
        station, events = run_feed([part_bytes(tmp_path, GOOD)], store, log, metrics)
        (row,) = log.query()
    assert (row.status, row.prediction, row.image_path) == ("ok", "ok", None)  # decided and logged, no image
    failed = [e for e in events if e.kind == "store_error"]
    assert len(failed) == 1 and failed[0].text.startswith(f"f0: image not kept in {store.folder} (")
    assert station.stats.store_errors == 1
    assert "defectlens_line_image_store_errors_total 1.0" in metrics.render().decode()
