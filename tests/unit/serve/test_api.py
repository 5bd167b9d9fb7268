"""The service's other surfaces: health, model metadata, API key, upload limit, metrics, page, CORS."""

from __future__ import annotations

import re

import pytest

from tests.unit.serve.conftest import KEY, png_bytes

ONE_FILE = [("files", ("a.png", png_bytes(0), "image/png"))]


def test_health_readiness_and_model_metadata(client, predictor):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"ready": True, "model_id": predictor.model_id}
    m = client.get("/v1/model").json()
    assert m["classes"] == ["ok", "defect"] and m["positive_class"] == "defect"
    assert (m["threshold"], m["temperature"], m["input_size"], m["in_channels"]) == (0.5, 1.0, 32, 1)
    assert m["model_id"] == predictor.model_id and m["backend"] == "onnxruntime"
    assert m["runtime_choice"] == predictor.runtime_choice and m["runtime_choice"]["runtime"] == "onnx"
    assert m["data_fingerprint"] == "f" * 64  # the training data's fingerprint travels in the bundle
    assert m["metrics"]["accuracy"] == 0.75 and m["metrics"]["split"] == "val"
    assert m["explain_available"] is True and m["ready"] is True


def test_every_endpoint_is_in_the_openapi_schema(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path in [
        "/",
        "/v1/predict",
        "/v1/model",
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/inspections",
        "/v1/inspections/{inspection_id}",
        "/v1/inspections/{inspection_id}/verdict",
        "/v1/inspections.csv",
    ]:
        assert path in paths, path
    docs = client.get("/docs")
    assert docs.status_code == 200
    # /docs works offline: its scripts and styles come from this server, never from a CDN
    assets = re.findall(r'(?:src|href)="([^"]+)"', docs.text)
    assert assets and not [a for a in assets if a.startswith(("http://", "https://", "//"))]
    for asset in assets:
        assert client.get(asset).status_code == 200, asset


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/v1/model"),
        ("get", "/v1/inspections"),
        ("get", "/v1/inspections/1"),
        ("get", "/v1/inspections.csv"),
        ("post", "/v1/inspections/1/verdict"),
        ("post", "/v1/predict"),
        ("get", "/metrics"),
    ],
)
def test_with_an_api_key_v1_and_metrics_need_it(make_client, method, path):
    with make_client(api_key=KEY) as (c, _):
        for headers in ({}, {"X-API-Key": "wrong-key-000"}, {"Authorization": f"Basic {KEY}"}):
            r = getattr(c, method)(path, headers=headers)
            assert r.status_code == 401, (path, headers)
            assert r.json()["error"] == "unauthorized" and r.headers["www-authenticate"] == "Bearer"
        for headers in ({"X-API-Key": KEY}, {"Authorization": f"Bearer {KEY}"}):
            assert getattr(c, method)(path, headers=headers).status_code != 401


def test_health_and_the_page_stay_open_with_a_key(make_client):
    with make_client(api_key=KEY) as (c, log):
        for path in ("/healthz", "/readyz", "/", "/static/app.js", "/static/style.css", "/openapi.json"):
            assert c.get(path).status_code == 200, path
        ok = c.post("/v1/predict", files=ONE_FILE, headers={"Authorization": f"Bearer {KEY}"})
        assert ok.status_code == 200 and log.count() == 1
        assert c.post("/v1/predict", files=ONE_FILE).status_code == 401 and log.count() == 1


def test_uploads_over_the_limit_get_413_by_header_and_by_counting(make_client):
    with make_client(max_upload_mb=0.25) as (c, log):
        big = [("files", ("big.png", b"\0" * 300_000, "image/png"))]
        r = c.post("/v1/predict", files=big)  # Content-Length says too much: refused unread
        assert r.status_code == 413 and r.json()["error"] == "upload_too_large" and "0.25 MB" in r.json()["detail"]

        def chunks():  # no Content-Length: the bytes are counted as they stream
            yield b'--xyz\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n\r\n'
            for _ in range(40):
                yield b"\0" * 8192

        r = c.post("/v1/predict", content=chunks(), headers={"Content-Type": "multipart/form-data; boundary=xyz"})
        assert r.status_code == 413 and r.json()["error"] == "upload_too_large"
        assert c.post("/v1/predict", files=ONE_FILE).status_code == 200  # under the limit all is well
        assert log.count() == 1
        metrics = c.get("/metrics").text
    assert 'defectlens_errors_total{kind="upload_too_large"} 2.0' in metrics


def test_metrics_count_requests_errors_batches_and_classes(client):
    files = [*ONE_FILE, ("files", ("b.txt", b"text", "text/plain"))]
    client.post("/v1/predict", files=files)
    client.get("/v1/inspections/12345")
    text = client.get("/metrics").text
    assert client.get("/metrics").headers["content-type"].startswith("text/plain")
    assert re.search(r'defectlens_requests_total\{method="POST",route="/v1/predict",status="200"\} 1\.0', text)
    assert 'route="/v1/inspections/{inspection_id}",status="404"' in text  # templates, not raw paths
    assert 'defectlens_errors_total{kind="not_an_image"} 1.0' in text
    assert "defectlens_batch_size_count 1.0" in text and "defectlens_batch_size_sum 1.0" in text
    assert re.search(r'defectlens_predictions_total\{label="(ok|defect)"\} 1\.0', text)
    assert "defectlens_request_latency_seconds_bucket" in text and "defectlens_ready 1.0" in text


def test_two_apps_keep_separate_metrics(make_client):
    with make_client() as (a, _), make_client() as (b, _):
        a.post("/v1/predict", files=ONE_FILE)
        assert "defectlens_batch_size_count 1.0" in a.get("/metrics").text
        assert "defectlens_batch_size_count 0.0" in b.get("/metrics").text


def test_the_page_is_self_contained_and_never_injects_html(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    html = r.text
    assert 'id="threshold"' in html and 'id="drop"' in html and 'type="file"' in html
    assert "http://" not in html and "https://" not in html  # no CDN: works offline
    js = client.get("/static/app.js").text
    assert not re.search(r"\.(innerHTML|outerHTML)\s*=|insertAdjacentHTML\(|document\.write", js)
    assert "textContent" in js and "://" not in js
    assert "p >= threshold" in js.replace("result.probabilities[pos] >= threshold", "p >= threshold")
    assert client.get("/static/style.css").headers["content-type"].startswith("text/css")


def test_cors_is_off_by_default_and_on_for_named_origins(make_client):
    preflight = {"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}
    with make_client() as (c, _):
        r = c.options("/v1/predict", headers=preflight)
        assert "access-control-allow-origin" not in r.headers
        assert "access-control-allow-origin" not in c.get("/v1/model", headers={"Origin": "http://x.example"}).headers
    with make_client(cors_origins=("http://mes.local",)) as (c, _):
        r = c.get("/v1/model", headers={"Origin": "http://mes.local"})
        assert r.headers["access-control-allow-origin"] == "http://mes.local"
        assert (
            "access-control-allow-origin" not in c.get("/v1/model", headers={"Origin": "http://evil.example"}).headers
        )
