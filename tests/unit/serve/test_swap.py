"""Swapping the served model without stopping: ``POST /v1/model`` (behind the key, even when predict is open),
``POST /v1/model/rollback``, the class check, a corrupt bundle refused while the old model serves on (counted in
/metrics), predict requests fired from threads while the model changes under them (none fails, every answer and
log row names the model that decided it, with that model's numbers), a gathered batch split per model, and
SIGHUP re-reading the bundle file of a real ``defectlens serve`` process."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import CONSTANT_PROBS
from tests.unit.serve.conftest import KEY, png_bytes

ROOT = Path(__file__).resolve().parents[3]
AUTH = {"X-API-Key": KEY}
DEADLINE = 60.0  # bounds a hang only


@pytest.fixture(scope="module")
def other(constant_bundle):
    """A second bundle with the served one's classes (ok, defect) and another model id; every image gets the
    same probabilities from it, so an answer shows which model gave it."""
    from defectlens.inference.predictor import Predictor

    path = constant_bundle("defect_last")
    return path, Predictor.load(path, threads=1)


def predict(client, seed: int = 0):
    return client.post("/v1/predict", files={"files": (f"{seed}.png", png_bytes(seed), "image/png")}, headers=AUTH)


def swap(client, path, **extra):
    return client.post("/v1/model", json={"path": str(path), **extra}, headers=AUTH)


def swap_metric(client, action: str, outcome: str) -> float:
    text = client.get("/metrics", headers=AUTH).text
    found = re.search(rf'defectlens_model_swaps_total{{action="{action}",outcome="{outcome}"}} ([0-9.]+)', text)
    return float(found.group(1)) if found else 0.0


def test_swap_then_rollback_changes_the_model_that_answers(make_client, predictor, other, bundle) -> None:
    other_path, other_model = other
    with make_client(api_key=KEY) as (client, log):
        assert client.post("/v1/model/rollback", headers=AUTH).status_code == 409  # nothing to roll back to yet
        assert predict(client).json()["model_id"] == predictor.model_id
        r = swap(client, other_path)
        assert r.status_code == 200, r.text
        done = r.json()
        assert done["action"] == "load" and done["path"] == str(other_path)
        assert (done["model_id"], done["previous_model_id"]) == (other_model.model_id, predictor.model_id)
        info = client.get("/v1/model", headers=AUTH).json()
        assert (info["model_id"], info["previous_model_id"]) == (other_model.model_id, predictor.model_id)
        body = predict(client).json()
        assert body["model_id"] == body["results"][0]["model_id"] == other_model.model_id
        assert body["results"][0]["probabilities"] == pytest.approx(CONSTANT_PROBS["defect_last"], abs=1e-5)
        back = client.post("/v1/model/rollback", headers=AUTH).json()
        assert (back["action"], back["model_id"], back["previous_model_id"]) == (
            "rollback",
            predictor.model_id,
            other_model.model_id,
        )
        row = log.get(predict(client).json()["results"][0]["inspection_id"])
        assert row is not None and row.model_id == predictor.model_id
        assert client.get("/readyz").json() == {"ready": True, "model_id": predictor.model_id}
        assert swap_metric(client, "load", "ok") == 1 and swap_metric(client, "rollback", "ok") == 1


def test_a_corrupt_or_missing_bundle_is_refused_and_the_old_model_serves_on(make_client, predictor, bundle, tmp_path):
    truncated = tmp_path / "truncated.dlens"
    truncated.write_bytes(Path(bundle).read_bytes()[:2000])
    garbage = tmp_path / "garbage.dlens"
    garbage.write_bytes(b"not a bundle at all")
    with make_client(api_key=KEY) as (client, _):
        for path in (truncated, garbage, tmp_path / "missing.dlens"):
            r = swap(client, path)
            assert r.status_code == 422, r.text
            assert r.json()["error"] == "model_refused" and str(path) in r.json()["detail"]
            assert predict(client).json()["model_id"] == predictor.model_id
        assert swap_metric(client, "load", "failed") == 3
        info = client.get("/v1/model", headers=AUTH).json()
        assert (info["model_id"], info["previous_model_id"]) == (predictor.model_id, None)


def test_a_checkpoint_is_not_loaded_over_http(make_client, predictor, run_dir) -> None:
    """A checkpoint is a pickle: only a bundle may be named by a remote caller."""
    with make_client(api_key=KEY) as (client, _):
        r = swap(client, run_dir / "best.pt")
        assert r.status_code == 422 and "not a .dlens bundle" in r.json()["detail"]
        assert predict(client).json()["model_id"] == predictor.model_id


def test_other_classes_are_refused_naming_both_lists_unless_allowed(make_client, predictor, constant_bundle) -> None:
    three = constant_bundle("three_classes")
    with make_client(api_key=KEY) as (client, _):
        r = swap(client, three)
        assert r.status_code == 409 and r.json()["error"] == "classes_differ"
        assert "[crack, ok, scratch]" in r.json()["detail"] and "[ok, defect]" in r.json()["detail"]
        assert predict(client).json()["model_id"] == predictor.model_id
        r = swap(client, three, allow_new_classes=True)
        assert r.status_code == 200 and r.json()["classes"] == ["crack", "ok", "scratch"]
        result = predict(client).json()["results"][0]
        assert result["probabilities"] == pytest.approx(CONSTANT_PROBS["three_classes"], abs=1e-5)


def test_changing_the_model_needs_the_key_even_when_predict_is_open(make_client, other) -> None:
    from defectlens.serve.auth import NO_KEY

    other_path, _ = other
    with make_client() as (client, _):  # no key: predict is open
        assert predict(client).status_code == 200
        for r in (swap(client, other_path), client.post("/v1/model/rollback", headers=AUTH)):
            assert r.status_code == 403 and r.json() == {"error": "forbidden", "detail": NO_KEY}
        text = client.get("/metrics").text  # counted as what it is, not as a cross-origin refusal
        assert 'defectlens_errors_total{kind="forbidden"} 2.0' in text and 'kind="cross_origin"' not in text
    with make_client(api_key=KEY) as (client, _):
        assert client.post("/v1/model", json={"path": str(other_path)}).status_code == 401
        wrong = {"X-API-Key": "not-the-key-at-all"}
        assert client.post("/v1/model", json={"path": str(other_path)}, headers=wrong).status_code == 401
        assert client.post("/v1/model/rollback").status_code == 401


def test_requests_fired_while_the_model_is_swapped_never_fail_and_name_their_model(
    make_client, predictor, other, bundle
) -> None:
    other_path, other_model = other
    expected = {  # what each model answers for each image
        predictor.model_id: lambda seed: predictor.predict(png_bytes(seed)).probabilities,
        other_model.model_id: lambda seed: CONSTANT_PROBS["defect_last"],
    }
    answers: list[tuple[int, int, dict]] = []
    swapping_done = threading.Event()
    with make_client(api_key=KEY, inference_threads=2) as (client, log):

        def fire(worker: int) -> None:
            n, after = 0, 0
            while after < 2:  # until two requests were sent after the last swap
                after += swapping_done.is_set()
                seed = worker * 1000 + n
                r = predict(client, seed)
                answers.append((seed, r.status_code, r.json()))
                n += 1

        threads = [threading.Thread(target=fire, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        end = time.monotonic() + DEADLINE
        while not answers and time.monotonic() < end:  # the first model answered before any swap
            time.sleep(0.01)
        try:
            for target in (other_path, bundle, other_path, bundle, other_path):
                r = swap(client, target)
                assert r.status_code == 200, r.text
        finally:
            swapping_done.set()
            for t in threads:
                t.join(DEADLINE)
        assert client.get("/v1/model", headers=AUTH).json()["model_id"] == other_model.model_id
        assert swap_metric(client, "load", "ok") == 5
        rows = {}
        for seed, status, body in answers:
            assert status == 200, body
            (result,) = body["results"]
            model_id = result["model_id"]
            assert model_id in expected and body["model_id"] == model_id
            want = expected[model_id](seed)
            assert result["probabilities"] == pytest.approx(want, abs=1e-5), (seed, model_id)
            row = log.get(result["inspection_id"])
            assert row is not None and row.model_id == model_id
            rows[result["inspection_id"]] = model_id
    assert len(rows) == len(answers) >= 20
    assert set(rows.values()) == set(expected)  # both models answered


def test_a_batch_gathered_across_a_swap_runs_each_frame_on_its_own_model(predictor, other, tmp_path) -> None:
    from defectlens.inspections import InspectionLog
    from defectlens.serve import ServeConfig
    from defectlens.serve.service import Service
    from defectlens.serve.uploads import Upload, decode

    _, other_model = other
    with InspectionLog(tmp_path / "log.sqlite") as log:
        service = Service(predictor, log, config=ServeConfig(worker_threads=2))
        images = [png_bytes(i) for i in range(3)]
        items = [
            (model, decode(Upload(f"{i}.png", img), model))
            for i, (model, img) in enumerate(zip((predictor, other_model, predictor), images, strict=True))
        ]
        judged = service._run_model(items)
    samples = {s.name: s.value for s in service.metrics.batch_size.collect()[0].samples}
    assert samples["defectlens_batch_size_count"] == 2 and samples["defectlens_batch_size_sum"] == 3  # one per model
    for (model, _), img, (probs, _) in zip(items, images, judged, strict=True):
        assert np.allclose(probs, list(model.predict(img).probabilities.values()), atol=1e-6)


def test_service_swaps_off_the_event_loop(predictor, other, tmp_path) -> None:
    """While a swap loads, the event loop goes on (a request could be answered meanwhile)."""
    from defectlens.inspections import InspectionLog
    from defectlens.serve import ServeConfig
    from defectlens.serve.service import Service

    other_path, other_model = other

    async def main() -> tuple[int, str | None]:
        with InspectionLog(tmp_path / "log.sqlite") as log:
            service = Service(predictor, log, config=ServeConfig(worker_threads=2))
            await service.start()
            ticks = 0
            try:
                swapping = asyncio.ensure_future(service.swap(str(other_path)))
                while not swapping.done():
                    ticks += 1
                    await asyncio.sleep(0)
                done = await swapping
            finally:
                await service.stop()
            return ticks, done.model_id

    ticks, model_id = asyncio.run(main())
    assert model_id == other_model.model_id and ticks > 1


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on this platform")
def test_sighup_makes_defectlens_serve_read_its_bundle_file_again(tmp_path, bundle, other, predictor) -> None:
    import httpx

    other_path, other_model = other
    served = tmp_path / "served.dlens"
    shutil.copyfile(bundle, served)
    cmd = [sys.executable, "-m", "defectlens", "serve", "--model", str(served), "--port", "0",
           "--db", str(tmp_path / "log.sqlite"), "--api-key", KEY, "--threads", "1"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        seen = ""
        while not (found := re.search(r"at (http://\S+/)", seen)):
            line = proc.stderr.readline()
            assert line, f"the service exited {proc.wait(DEADLINE)} before serving: {seen}"
            seen += line
        with httpx.Client(base_url=found.group(1), headers=AUTH, timeout=DEADLINE) as http:
            end = time.monotonic() + DEADLINE
            while http.get("/readyz").status_code != 200:
                assert time.monotonic() < end and proc.poll() is None, "the service never became ready"
                time.sleep(0.05)
            assert http.get("/v1/model").json()["model_id"] == predictor.model_id
            os.replace(shutil.copyfile(other_path, tmp_path / "next.dlens"), served)  # a new bundle, in one step
            proc.send_signal(signal.SIGHUP)
            while (info := http.get("/v1/model").json())["model_id"] != other_model.model_id:
                assert time.monotonic() < end and proc.poll() is None, "SIGHUP did not load the new bundle"
                time.sleep(0.05)
            assert info["previous_model_id"] == predictor.model_id
            files = {"files": ("p.png", png_bytes(1), "image/png")}
            assert http.post("/v1/predict", files=files).json()["model_id"] == other_model.model_id
            assert 'defectlens_model_swaps_total{action="reload",outcome="ok"} 1.0' in http.get("/metrics").text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(DEADLINE) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has drained
        assert proc.stderr is not None
        assert f"model reload: now serving {other_model.model_id}" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
