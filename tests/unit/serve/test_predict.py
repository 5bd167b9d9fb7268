"""POST /v1/predict: decisions through the Predictor, per-file errors, thresholds, logging, Grad-CAM."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from tests.unit.serve.conftest import BAD, jpeg_bytes, png_bytes


def post(client, *files, data=None, params=None, headers=None):
    parts = [("files", (name, body, "application/octet-stream")) for name, body in files]
    return client.post("/v1/predict", files=parts, data=data or {}, params=params, headers=headers)


def test_one_image_is_decided_by_the_predictor_and_logged_before_the_answer(client, predictor):
    img = png_bytes(1)
    r = post(client, ("part 1.png", img))
    assert r.status_code == 200
    body = r.json()
    (res,) = body["results"]
    expected = predictor.predict(img)
    assert res["status"] == "ok" and res["http_status"] == 200
    assert res["prediction"] == expected.prediction
    assert res["probabilities"] == pytest.approx(expected.probabilities, abs=1e-6)
    assert res["confidence"] == pytest.approx(res["probabilities"][res["prediction"]])
    assert res["defect_probability"] == pytest.approx(res["probabilities"]["defect"])
    assert (res["threshold"], res["temperature"]) == (0.5, 1.0)
    assert res["model_id"] == predictor.model_id == body["model_id"]
    assert res["latency_ms"] > 0 and (res["width"], res["height"]) == (40, 30)
    row = client.log.get(res["inspection_id"])  # committed before the response was sent
    assert row.client_name == "part 1.png" and row.prediction == res["prediction"] and row.source == "api"
    assert row.image_bytes == len(img) and row.threshold == 0.5 and row.image_path is None


def test_threshold_overrides_for_one_call_as_form_field_or_query(client):
    img = png_bytes(2)
    assert post(client, ("a.png", img), data={"threshold": "0"}).json()["results"][0]["prediction"] == "defect"
    high = post(client, ("a.png", img), params={"threshold": 1.0}).json()
    assert high["threshold"] == 1.0 and high["results"][0]["prediction"] == "ok"
    assert client.log.get(high["results"][0]["inspection_id"]).threshold == 1.0
    bad = post(client, ("a.png", img), data={"threshold": "1.5"})
    assert bad.status_code == 422 and bad.json()["error"] == "invalid_request"


def test_mixed_good_and_bad_files_answer_every_file(client):
    names = ["good.png", *BAD, "good.jpg"]
    bodies = [png_bytes(3), *(b for b, _, _ in BAD.values()), jpeg_bytes(4)]
    r = post(client, *zip(names, bodies, strict=True))
    assert r.status_code == 200  # some files succeeded: 200 with a status per file
    results = r.json()["results"]
    assert [x["file"] for x in results] == names
    expected = [200, *(code for _, code, _ in BAD.values()), 200]
    assert [x["http_status"] for x in results] == expected
    assert [x.get("error") for x in results[1:-1]] == [kind for _, _, kind in BAD.values()]
    for x in results[1:-1]:
        assert x["status"] == "error" and x["reason"] and "prediction" not in x
        row = client.log.get(x["inspection_id"])  # failures are logged too, with their reason
        assert row.status == "error" and row.reason == x["reason"] and row.prediction is None
    assert r.json()["ok"] == 2 and r.json()["errors"] == len(BAD)


@pytest.mark.parametrize(
    ("files", "status"),
    [
        ([("a.txt", BAD["text"][0]), ("b.tif", BAD["lab"][0])], 415),  # all not images we read
        ([("a.jpg", BAD["truncated"][0]), ("b.png", BAD["bomb"][0])], 422),  # all broken images
        ([("a.txt", BAD["text"][0]), ("b.jpg", BAD["truncated"][0])], 422),  # failed differently
    ],
)
def test_a_request_where_every_file_failed_gets_their_status(client, files, status):
    r = post(client, *files)
    assert r.status_code == status
    assert r.json()["ok"] == 0 and len(r.json()["results"]) == 2


def test_requests_without_files_or_with_too_many_are_refused(client):
    assert client.post("/v1/predict", data={"threshold": "0.5"}).status_code == 422
    r = post(client, *[(f"{i}.png", b"x") for i in range(65)])
    assert r.status_code == 422 and r.json()["error"] == "too_many_files"


def test_client_file_names_are_data_never_paths(make_client, tmp_path):
    hostile = "../../../../tmp/evil<script>alert(1)</script>.png"
    img = png_bytes(5)
    with make_client(store=True) as (c, log):
        res = post(c, (hostile, img)).json()["results"][0]
        row = log.get(res["inspection_id"])
    assert res["file"] == hostile and row.client_name == hostile  # echoed and logged as given
    import hashlib

    digest = hashlib.sha256(img).hexdigest()
    assert row.image_path == f"{digest[:2]}/{digest}.png"  # named by content and decoded format
    stored = tmp_path / "images" / row.image_path
    assert stored.read_bytes() == img
    assert sorted(p.name for p in (tmp_path / "images").rglob("*") if p.is_file()) == [f"{digest}.png"]
    assert not list(tmp_path.glob("**/evil*"))


def test_a_failing_image_store_costs_the_copy_never_the_inspection(make_client, tmp_path):
    """The store's disk refuses the write (here: its sub-folder's name is taken by a file): the part is still
    decided, logged and answered, without an image path, and the failure is counted."""
    import hashlib

    img = png_bytes(7)
    digest = hashlib.sha256(img).hexdigest()
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / digest[:2]).write_bytes(b"")  # mkdir of the image's folder fails
    with make_client(store=True) as (c, log):
        res = post(c, ("a.png", img)).json()["results"][0]
        row = log.get(res["inspection_id"])
        metrics = c.get("/metrics").text
    assert res["status"] == "ok" and res["prediction"] is not None and res["image_path"] is None
    assert row is not None and row.image_path is None and row.prediction == res["prediction"]
    assert 'defectlens_errors_total{kind="image_store"} 1.0' in metrics
    assert not [p for p in (tmp_path / "images").rglob("*.tmp")]


def test_page_uploads_are_logged_as_web(client):
    res = post(client, ("a.png", png_bytes(6)), headers={"X-Defectlens-Client": "page"}).json()["results"][0]
    assert client.log.get(res["inspection_id"]).source == "web"


@pytest.mark.slow
def test_explain_adds_a_gradcam_overlay_at_the_image_size(client):
    r = post(client, ("a.png", png_bytes(7, size=(48, 36))), ("b.txt", b"nope"), data={"explain": "true"})
    ok, bad = r.json()["results"]
    overlay = Image.open(io.BytesIO(base64.b64decode(ok["overlay_png"])))
    assert overlay.format == "PNG" and overlay.size == (48, 36)
    assert np.asarray(overlay).std() > 0
    assert "overlay_png" not in bad and "explain_note" not in bad


def test_explain_without_torch_weights_gives_a_note_and_still_decides(make_client, bundle):
    from defectlens.core.bundle import read_bundle
    from defectlens.inference.predictor import Predictor

    onnx_only = Predictor.from_onnx(read_bundle(bundle).onnx, threads=1)
    with make_client(pred=onnx_only) as (c, _):
        res = post(c, ("a.png", png_bytes(8)), params={"explain": "true"}).json()["results"][0]
    assert res["status"] == "ok" and res["prediction"] in ("ok", "defect")
    assert "overlay_png" not in res and "no torch weights" in res["explain_note"]
