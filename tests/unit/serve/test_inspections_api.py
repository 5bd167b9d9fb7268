"""The inspection log over HTTP: paging, filters, one row, verdicts and the CSV export."""

from __future__ import annotations

import csv
import io

import pytest

from tests.unit.serve.conftest import png_bytes


@pytest.fixture
def filled(client):
    """Three decisions (forced by threshold) and one failed file: ids in upload order."""
    ids = []
    for threshold in ("0", "1", "0"):
        r = client.post("/v1/predict", files=[("files", ("p.png", png_bytes(len(ids)), "image/png"))],
                        data={"threshold": threshold})  # fmt: skip
        ids.append(r.json()["results"][0]["inspection_id"])
    bad = client.post("/v1/predict", files=[("files", ("x.txt", b"no", "text/plain"))])
    ids.append(bad.json()["results"][0]["inspection_id"])
    return ids


def ids_of(client, **params):
    r = client.get("/v1/inspections", params=params)
    assert r.status_code == 200, r.text
    return [i["id"] for i in r.json()["items"]]


def test_paging_newest_first_with_total(client, filled):
    page = client.get("/v1/inspections", params={"limit": 2, "offset": 1}).json()
    assert page["total"] == 4 and page["limit"] == 2 and page["offset"] == 1
    assert [i["id"] for i in page["items"]] == [filled[2], filled[1]]
    assert client.get("/v1/inspections", params={"limit": 0}).status_code == 422
    assert client.get("/v1/inspections", params={"limit": 501}).status_code == 422


def test_filters_by_label_status_model_and_date(client, filled, predictor):
    d1, o, d2, bad = filled
    assert ids_of(client, label="defect") == [d2, d1]
    assert ids_of(client, label="ok") == [o]
    assert ids_of(client, status="error") == [bad]
    assert ids_of(client, model_id=predictor.model_id) == [bad, d2, o, d1]
    assert ids_of(client, model_id="other") == []
    assert ids_of(client, since="2000-01-01", until="2999-12-31") == [bad, d2, o, d1]
    assert ids_of(client, since="2999-01-01T00:00:00Z") == []
    today = client.get(f"/v1/inspections/{d1}").json()["created_utc"][:10]
    assert ids_of(client, until=today) == [bad, d2, o, d1]  # a bare date includes that whole day
    assert ids_of(client, until="2000-01-01T00:00:00+02:00") == []
    r = client.get("/v1/inspections", params={"since": "yesterday"})
    assert r.status_code == 422 and "'yesterday' is not an ISO 8601" in r.json()["detail"]


def test_verdicts_confirm_override_and_filter(client, filled):
    d1, o, _, _ = filled
    r = client.post(f"/v1/inspections/{d1}/verdict", json={"verdict": "confirmed", "comment": "scratch seen"})
    assert r.status_code == 200 and r.json()["verdict_label"] == "defect" and r.json()["comment"] == "scratch seen"
    r = client.post(
        f"/v1/inspections/{o}/verdict", json={"verdict": "overridden", "label": "defect", "operator": "ana"}
    )
    assert r.json()["verdict"] == "overridden" and r.json()["verdict_label"] == "defect" and r.json()["verdict_utc"]
    assert client.log.get(o).operator == "ana"  # committed to the log
    assert ids_of(client, verdict="confirmed") == [d1]
    assert ids_of(client, verdict="overridden") == [o]
    assert len(ids_of(client, verdict="none")) == 2


@pytest.mark.parametrize(
    ("target", "body", "status", "says"),
    [
        (0, {"verdict": "overridden"}, 422, "an override needs a label"),
        (0, {"verdict": "overridden", "label": "scratched"}, 422, "one of ok, defect"),
        (0, {"verdict": "maybe"}, 422, "invalid_request"),
        (3, {"verdict": "confirmed"}, 422, "no decision to review"),
        (None, {"verdict": "confirmed"}, 404, "no inspection with id 999"),
    ],
)
def test_bad_verdicts_are_refused(client, filled, target, body, status, says):
    inspection = 999 if target is None else filled[target]
    r = client.post(f"/v1/inspections/{inspection}/verdict", json=body)
    assert r.status_code == status and says in r.text
    assert client.log.get(filled[0]).verdict is None


def test_one_inspection_and_a_missing_one(client, filled):
    got = client.get(f"/v1/inspections/{filled[1]}").json()
    assert got["id"] == filled[1] and got["prediction"] == "ok" and got["threshold"] == 1.0
    assert set(got["probabilities"]) == {"ok", "defect"}
    r = client.get("/v1/inspections/999")
    assert r.status_code == 404 and r.json() == {"error": "not_found", "detail": "no inspection with id 999"}
    assert client.get("/v1/inspections/abc").status_code == 422


def test_csv_export_streams_the_filtered_rows(client, filled):
    r = client.get("/v1/inspections.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [int(x["id"]) for x in rows] == filled  # oldest first
    assert rows[3]["status"] == "error" and rows[3]["client_name"] == "x.txt"
    defect = list(csv.DictReader(io.StringIO(client.get("/v1/inspections.csv", params={"label": "defect"}).text)))
    assert [int(x["id"]) for x in defect] == [filled[0], filled[2]]


def test_a_line_stations_rows_are_listed_filtered_and_tallied(client, filled):
    """Rows a `defectlens line` station writes into the same log: its name, capture time and part id come
    back through the API, `station=` and `status=dropped` filter them, and a dropped frame is never a part."""
    from defectlens.inspections import NewInspection

    common = {"source": "folder:/srv/in", "image_sha256": "ab" * 32, "image_bytes": 10, "station": "line-1"}
    decided = client.log.record(
        NewInspection(client_name="c1.png", prediction="ok", probabilities={"ok": 0.9, "defect": 0.1},
                      captured_utc="2026-12-05T10:00:00.000+00:00", part_id="P-1", **common)
    )  # fmt: skip
    dropped = client.log.record(
        NewInspection(client_name="c2.png", status="dropped", reason="queue full (8 frames waiting)", **common)
    )
    assert ids_of(client, station="line-1") == [dropped, decided]
    assert ids_of(client, status="dropped") == [dropped]
    assert ids_of(client, station="line-2") == []
    row = client.get(f"/v1/inspections/{decided}").json()
    assert (row["station"], row["captured_utc"], row["part_id"]) == ("line-1", "2026-12-05T10:00:00.000+00:00", "P-1")
    tally = client.get("/v1/inspections/tally", params={"station": "line-1"}).json()
    assert (tally["total"], tally["decided"], tally["dropped"], tally["errors"]) == (2, {"ok": 1}, 1, 0)
    assert client.get("/v1/inspections/tally").json()["total"] == len(filled) + 2
