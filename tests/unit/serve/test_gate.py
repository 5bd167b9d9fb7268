"""The gate on the web service (#26): a frame the model cannot judge is answered ``needs_review`` (no class,
the reason and the gate's scores, HTTP 200), logged as its own status and counted apart; ``warn`` decides it
and flags it; the model endpoint reports the gate in force."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from tests.unit.serve.test_predict import post

NODE = shutil.which("node")


def black_png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((48, 48), np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def train_png(tiny_dataset) -> bytes:
    """The first training image of ``tiny_dataset``: one the gate lets through."""
    from defectlens.data.manifest import Manifest

    manifest = Manifest.read(tiny_dataset)
    return manifest.resolve(manifest.split("train")[0]).read_bytes()


@pytest.fixture(scope="module")
def gated(gated_bundle):
    from defectlens.inference.predictor import Predictor

    return {mode: Predictor.load(gated_bundle, threads=1, gate=mode) for mode in ("refuse", "warn")}


def test_a_black_frame_is_needs_review_with_its_reason_and_a_train_image_is_decided(make_client, gated, train_png):
    with make_client(pred=gated["refuse"]) as (client, log):
        r = post(client, ("black.png", black_png()), ("part.png", train_png))
        assert r.status_code == 200  # an answer, not an error
        body = r.json()
        assert (body["files"], body["ok"], body["needs_review"], body["errors"]) == (2, 1, 1, 0)
        black, part = body["results"]
        assert black["status"] == "needs_review" and black["http_status"] == 200
        assert "prediction" not in black and "probabilities" not in black
        assert "uniform" in black["reason"] and black["reason"] == "; ".join(black["gate"]["reasons"])
        assert black["gate"]["flagged"] is True and black["gate"]["stats"]["contrast"] == 0.0
        assert (black["width"], black["height"]) == (48, 48)
        assert part["status"] == "ok" and part["prediction"] in ("ok", "defect")
        assert part["gate"]["flagged"] is False and part["gate"]["reasons"] == []
        row = log.get(black["inspection_id"])
        assert (row.status, row.prediction, row.probabilities) == ("needs_review", None, {})
        assert row.defect_probability is None
        assert row.gate_flagged is True and row.reason == black["reason"]
        assert row.ood_score == black["gate"]["ood_score"]
        assert log.get(part["inspection_id"]).gate_flagged is False
        tally = client.get("/v1/inspections/tally").json()
        assert tally == {
            "total": 2, "decided": {part["prediction"]: 1}, "needs_review": 1, "errors": 0, "flagged": 0, "dropped": 0
        }  # fmt: skip
        listed = client.get("/v1/inspections", params={"status": "needs_review"}).json()
        assert [i["id"] for i in listed["items"]] == [black["inspection_id"]]
        metrics = client.get("/metrics").text
        assert 'defectlens_gate_flagged_total{outcome="needs_review"} 1.0' in metrics
        assert f'defectlens_predictions_total{{label="{part["prediction"]}"}} 1.0' in metrics


def test_only_a_black_frame_is_still_answered_200(make_client, gated):
    with make_client(pred=gated["refuse"]) as (client, _):
        r = post(client, ("black.png", black_png()))
        assert r.status_code == 200 and r.json()["results"][0]["status"] == "needs_review"


def test_a_frame_not_judged_is_overridden_not_confirmed(make_client, gated):
    with make_client(pred=gated["refuse"]) as (client, log):
        (res,) = post(client, ("black.png", black_png())).json()["results"]
        url = f"/v1/inspections/{res['inspection_id']}/verdict"
        refused = client.post(url, json={"verdict": "confirmed"})
        assert refused.status_code == 422 and "was not judged" in refused.text
        done = client.post(url, json={"verdict": "overridden", "label": "defect"})
        assert done.status_code == 200 and done.json()["verdict_label"] == "defect"
        assert log.get(res["inspection_id"]).status == "needs_review"  # the model's outcome stays as it was


def test_warn_mode_gives_the_class_and_the_flag(make_client, gated):
    with make_client(pred=gated["warn"]) as (client, log):
        body = post(client, ("black.png", black_png())).json()
        (res,) = body["results"]
        assert (body["ok"], body["needs_review"]) == (1, 0)
        assert res["status"] == "ok" and res["prediction"] in ("ok", "defect")
        assert sum(res["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
        assert res["gate"]["flagged"] is True and "uniform" in res["gate"]["reasons"][0]
        row = log.get(res["inspection_id"])
        assert (row.status, row.prediction, row.gate_flagged) == ("ok", res["prediction"], True)
        assert "uniform" in row.reason
        assert log.tally().to_dict() == {
            "total": 1, "decided": {res["prediction"]: 1}, "needs_review": 0, "errors": 0, "flagged": 1, "dropped": 0
        }  # fmt: skip
        assert 'defectlens_gate_flagged_total{outcome="warned"} 1.0' in client.get("/metrics").text


def test_the_model_endpoint_reports_the_gate_in_force(make_client, gated, predictor):
    with make_client(pred=gated["warn"]) as (client, _):
        gate = client.get("/v1/model").json()["gate"]
        assert gate["mode"] == "warn" and gate["active"] is True and gate["ood_threshold"] > 0
    with make_client() as (client, _):  # the old bundle: no profile, no gate
        gate = client.get("/v1/model").json()["gate"]
        assert gate["active"] is False and "no reference profile" in gate["note"]
        (res,) = post(client, ("black.png", black_png())).json()["results"]
        assert res["status"] == "ok" and "gate" not in res


def test_serve_config_takes_the_gate_mode():
    from defectlens.core.errors import DefectlensError
    from defectlens.serve import ServeConfig

    assert ServeConfig().gate == "refuse" and ServeConfig(gate="off").gate == "off"
    with pytest.raises(DefectlensError, match="unknown gate mode 'lax'"):
        ServeConfig(gate="lax")  # type: ignore[arg-type]


def test_the_page_words_and_colours_a_frame_not_judged_apart():
    from defectlens.serve.page import asset

    js, css = asset("app.js"), asset("style.css")
    assert 'const NOT_JUDGED = "Not judged — needs review";' in js
    colours = dict(re.findall(r"--(ok|bad|err|review): (#[0-9a-f]{6})", css))
    assert colours["review"] == "#f5a300" and len(set(colours.values())) == 4  # amber, none shared
    assert ".decision.review { background: var(--review);" in css


@pytest.mark.skipif(NODE is None, reason="node not installed: the page's functions are run in it")
def test_the_page_counts_needs_review_apart_and_shows_its_reason(tmp_path):
    from defectlens.serve.page import asset

    calls = [
        "tally({ok: 3, needs_review: 2, errors: 1})",
        'outcomeText({status: "needs_review", reason: "frame is almost uniform", prediction: null})',
        'outcomeText({status: "ok", prediction: "defect", reason: ""})',
        'outcomeText({status: "error", reason: "not an image"})',
        "gateScore({gate: {ood_score: 7.254, ood_threshold: 2.5}})",
        "gateScore({gate: {ood_score: null}})",
    ]
    stub = "const document = {addEventListener() {}}; const sessionStorage = {getItem() { return null; }};\n"
    script = tmp_path / "page.js"
    script.write_text(stub + asset("app.js") + f"\nprocess.stdout.write(JSON.stringify([{', '.join(calls)}]));\n")
    out = subprocess.run([NODE, str(script)], capture_output=True, text=True, timeout=60, check=True).stdout
    assert json.loads(out) == [
        "3 judged, 2 need review, 1 failed",
        "Not judged — needs review: frame is almost uniform",
        "defect",
        "error: not an image",
        " · OOD score 7.25 (flags above 2.50)",
        "",
    ]


@pytest.mark.parametrize(("argv", "mode"), [([], "refuse"), (["--gate", "warn"], "warn"), (["--gate", "off"], "off")])
def test_serve_takes_gate_on_the_command_line(monkeypatch, tmp_path, argv, mode):
    import defectlens.serve.server
    from defectlens.cli import main

    seen = {}
    monkeypatch.setattr(defectlens.serve.server, "serve", lambda model, config, on_ready: seen.update(gate=config.gate))
    assert main(["serve", "--model", str(tmp_path / "m.dlens"), *argv]) == 0
    assert seen == {"gate": mode}
