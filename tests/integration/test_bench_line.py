"""The line benchmark runs end to end in its quick mode: a station subprocess on a hot folder fed with ELPV
cells, a tiny bundle, Mosquitto and an asyncua PLC, then the GenICam simulator. No speed is asserted: the
record's shape, and that every fed file is accounted for (decided or logged as dropped), none silently."""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path

import pytest

from tests.benchmark_scripts import load_benchmark
from tests.require import import_or_missing, missing

pytestmark = pytest.mark.slow


def accounted(run: dict) -> None:
    assert run["exit_code"] == 0  # SIGTERM drained the station
    assert run["silent_drops"] == 0 and run["not_in_log"] == 0 and run["logged_without_mqtt"] == 0
    assert run["fed"] == run["logged"] + run["waiting_in_folder"] and run["duplicate_rows"] == 0
    assert sum(run["statuses"].values()) == run["logged"] and run["dropped"] == run["statuses"].get("dropped", 0)
    assert run["mqtt"]["n"] == run["logged"] - run["dropped"]  # every frame the model saw reached the MES
    assert run["plc_acked"] <= run["logged"]  # the rest is in ResultsOverrun or was never presented: counted there
    assert {"p50_ms", "p95_ms", "p99_ms"} <= set(run["mqtt"]) and {"p50_ms", "p99_ms"} <= set(run["opcua"])
    assert run["station_cpu_cores"] is not None and run["station_cpu_cores"] >= 0


def test_bench_line_quick_accounts_for_every_file(bundle, tmp_path):
    for module in ("watchdog", "paho.mqtt.client", "asyncua", "harvesters.core"):
        import_or_missing(
            module, flag="LINE", reason=f"the line benchmark needs {module} (the [line], [camera] extras)"
        )
    genicam = import_or_missing("genicam", flag="LINE", reason="the GenICam simulator comes with genicam ([camera])")
    bench = load_benchmark("bench_line")
    if bench.mosquitto() is None:
        missing("LINE", "the line benchmark needs the mosquitto broker (make sysdeps)")
    if not (Path(genicam.__file__).parent / "viky.cti").is_file():
        missing("LINE", "the genicam wheel's simulated camera producer (viky.cti) is missing")
    import_or_missing("elpv_dataset", flag="EXTRAS", reason="the fed images are ELPV cells (the [train] extra)")
    cells = tmp_path / "cells"
    cells.mkdir()
    for png in sorted(Path(str(resources.files("elpv_dataset") / "data" / "images")).glob("*.png"))[:8]:
        shutil.copy(png, cells / png.name)
    out = tmp_path / "line.json"
    argv = ["--quick", "--bundle", str(bundle), "--images", str(cells), "--rates", "10", "--overload", "60",
            "--search-steps", "0", "--seconds", "2", "--genicam-fps", "10", "--out", str(out)]  # fmt: skip
    result = bench.main(argv)
    assert json.loads(out.read_text()) == result
    assert result["quick"] is True and result["model_id"] and result["images"].startswith("8 images")
    (at10,) = result["rates"]
    assert at10["offered_parts_s"] == 10 and at10["fed"] == 20
    for run in (at10, result["overload"]):
        accounted(run)
    assert result["overload"]["fed"] == 120 and result["sustainable"]["steps"] == []
    (cam,) = result["genicam"]
    assert cam["exit_code"] == 0 and cam["frames_logged"] > 0 and cam["silent_drops"] == 0
    assert cam["mqtt"]["n"] == sum(cam["statuses"].values()) - cam["dropped"]
    assert result["goals"]["zero_silent_drops"] is True and result["goals"]["silent_drops_total"] == 0
    machine = result["machine"]
    assert machine["cpu"] and len(machine["load_average_at_start"]) == len(machine["load_average_at_end"]) == 3
