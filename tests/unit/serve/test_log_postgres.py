"""The web service on a PostgreSQL log: the inspection API's tests again, and a database that goes away while the
service runs (503, nothing acknowledged that was not committed) and comes back (the service recovers by itself)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.postgres_server import Server, drop_database, pg_server, running_server  # noqa: F401
from tests.unit.serve.conftest import BASE, png_bytes, wait_ready
from tests.unit.serve.test_inspections_api import (  # noqa: F401  (collected here again, on PostgreSQL)
    filled,
    test_a_line_stations_rows_are_listed_filtered_and_tallied,
    test_bad_verdicts_are_refused,
    test_csv_export_streams_the_filtered_rows,
    test_filters_by_label_status_model_and_date,
    test_one_inspection_and_a_missing_one,
    test_paging_newest_first_with_total,
    test_verdicts_confirm_override_and_filter,
)


def _serving(predictor, url: str):
    from fastapi.testclient import TestClient

    from defectlens.inspections import InspectionLog
    from defectlens.serve import ServeConfig, create_app

    log = InspectionLog(url, timeout=2)
    app = create_app(predictor, log, config=ServeConfig(worker_threads=2), store=None)
    return log, TestClient(app, base_url=BASE)


@pytest.fixture
def client(predictor, pg_server: Server) -> Iterator[object]:  # noqa: F811  (the imported session fixture)
    """The API's client, on a fresh PostgreSQL database (overrides the SQLite one of the conftest)."""
    url = pg_server.create_database()
    log, test_client = _serving(predictor, url)
    with test_client as c:
        wait_ready(c)
        c.log = log
        yield c
    log.close()
    drop_database(pg_server, url)


def _upload(client, seed: int):
    return client.post("/v1/predict", files=[("files", (f"p{seed}.png", png_bytes(seed), "image/png"))])


def test_a_database_that_goes_away_is_503_and_the_service_recovers_when_it_returns(predictor, pg_server):  # noqa: F811
    with running_server(fsync=False) as server:
        url = server.create_database().replace("postgres@", "postgres:s3cret@")  # trust auth ignores it
        log, test_client = _serving(predictor, url)
        acknowledged = []
        with test_client as c:
            wait_ready(c)
            r = _upload(c, 0)
            assert r.status_code == 200
            acknowledged.append(r.json()["results"][0]["inspection_id"])
            server.stop()
            for seed in (1, 2):
                r = _upload(c, seed)
                body = r.json()
                assert r.status_code == 503 and body["error"] == "log_unavailable", r.text
                assert "nothing of this request was recorded" in body["detail"] and "s3cret" not in body["detail"]
                assert "inspection_id" not in r.text
            assert c.get("/v1/inspections").status_code == 503
            server.start()
            for seed in (3, 4):
                r = _upload(c, seed)
                assert r.status_code == 200, r.text
                acknowledged.append(r.json()["results"][0]["inspection_id"])
            listed = c.get("/v1/inspections").json()["items"]
        log.close()
    assert sorted(i["id"] for i in listed) == sorted(acknowledged)
    assert sorted(i["client_name"] for i in listed) == ["p0.png", "p3.png", "p4.png"]
