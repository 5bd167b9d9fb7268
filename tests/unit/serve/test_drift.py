"""The service's drift watch: ``/metrics`` carries its gauges, the page its panel, and a drifted stream an alarm
in the log (``defectlens.serve.drift``) and in the gauges, once per episode."""

from __future__ import annotations

import logging
import re

import numpy as np
from PIL import Image

from tests.unit.serve.conftest import png_bytes


def gauge(text: str, name: str, labels: str = "") -> float | None:
    found = re.search(rf"^{name}{re.escape(labels)} ([-+0-9.eE]+|NaN)$", text, re.M)
    return float(found.group(1)) if found else None


def test_metrics_expose_the_drift_gauges_and_the_page_shows_the_panel(client) -> None:
    for seed in range(3):
        assert (
            client.post("/v1/predict", files={"files": (f"{seed}.png", png_bytes(seed), "image/png")}).status_code
            == 200
        )
    text = client.get("/metrics").text
    assert gauge(text, "defectlens_drift_window_size") == 100.0
    assert gauge(text, "defectlens_drift_alarm") == 0.0
    assert gauge(text, "defectlens_drift_alarms_total") == 0.0
    # the served test bundle has no reference profile: what cannot be watched is said, not left out
    assert gauge(text, "defectlens_drift_unavailable", '{statistic="image statistics and ood score"}') == 1.0
    html = client.get("/").text
    assert 'id="drift-panel"' in html and 'id="drift-checks"' in html
    js = client.get("/static/app.js").text
    assert "defectlens_drift_severity" in js and 'api("/metrics")' in js


def test_a_drifted_stream_raises_one_alarm_logged_and_gauged(gated_bundle, tiny_dataset, caplog) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from defectlens.data.manifest import Manifest
    from defectlens.inference.drift import DriftConfig
    from defectlens.inference.predictor import Predictor
    from defectlens.serve.drift import ServiceDrift

    predictor = Predictor.load(gated_bundle, threads=1)
    manifest = Manifest.read(tiny_dataset)
    images = [Image.open(manifest.resolve(r)).convert("L") for r in manifest.split("train")]
    registry = CollectorRegistry()
    drift = ServiceDrift(registry, DriftConfig(window=20))

    def feed(offset: float, rounds: int) -> None:
        for _ in range(rounds):
            arrays = [predictor.preprocess(Image.fromarray(np.clip(np.asarray(im) + offset, 0, 255).astype(np.uint8)))
                      for im in images]  # fmt: skip
            _, checks = predictor.judge(arrays, [None] * len(arrays))
            for check in checks:
                drift.observe(predictor, check, "ok", error=False)

    drift.refresh()  # no frame yet: nothing to report
    assert gauge(generate_latest(registry).decode(), "defectlens_drift_alarm") == 0.0
    with caplog.at_level(logging.INFO, logger="defectlens.serve.drift"):
        feed(70.0, 3)  # a lamp far brighter: every statistic moves, for 144 frames (7 windows): one episode
    alarms = [r for r in caplog.records if "DRIFT ALARM" in r.getMessage()]
    assert len(alarms) == 1 and alarms[0].levelno == logging.WARNING
    drift.refresh()
    text = generate_latest(registry).decode()
    assert gauge(text, "defectlens_drift_alarm") == 1.0 and gauge(text, "defectlens_drift_alarms_total") == 1.0
    severity = gauge(text, "defectlens_drift_severity", '{check="brightness"}')
    assert severity is not None and severity >= 1.0
    assert [e.kind for e in drift.events] == ["drift_alarm"]


def test_operator_overrides_on_the_page_feed_the_live_agreement_check(make_client, gated_bundle, tiny_dataset):
    """Verdicts entered through the API reach the watch: a run of overrides (the model wrong on every reviewed
    part) raises the agreement alarm; verdicts on another model's frames would not count."""
    from defectlens.data.manifest import Manifest
    from defectlens.inference.predictor import Predictor

    predictor = Predictor.load(gated_bundle, threads=1)
    manifest = Manifest.read(tiny_dataset)
    files = [manifest.resolve(r) for split in ("val", "test", "train") for r in manifest.split(split)]
    with make_client(pred=predictor) as (client, _):
        ids = []
        for f in files:
            answer = client.post("/v1/predict", files={"files": (f.name, f.read_bytes(), "image/png")}).json()
            row = answer["results"][0]
            if row["status"] == "ok":
                ids.append((row["inspection_id"], row["prediction"]))
        assert len(ids) >= 20, f"only {len(ids)} frames judged"
        assert gauge(client.get("/metrics").text, "defectlens_drift_severity", '{check="agreement"}') is None
        for inspection_id, decided in ids[:20]:
            other = next(c for c in predictor.spec.class_names if c != decided)
            verdict = {"verdict": "overridden", "label": other}
            reply = client.post(f"/v1/inspections/{inspection_id}/verdict", json=verdict)
            assert reply.status_code == 200, reply.text
        text = client.get("/metrics").text
    severity = gauge(text, "defectlens_drift_severity", '{check="agreement"}')
    assert severity is not None and severity >= 1.0
    assert gauge(text, "defectlens_drift_alarm") == 1.0
