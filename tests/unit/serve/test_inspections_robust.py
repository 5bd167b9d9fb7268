"""The inspection API under odd input: huge ids and offsets, dates in every ISO form, the verdict history,
a log that cannot be written, and the README naming the API's errors."""

from __future__ import annotations

import re
import sqlite3
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from defectlens.inspections import MAX_ID
from defectlens.serve.routes_predict import MAX_FILES
from tests.unit.serve.conftest import png_bytes


def upload(client, threshold: str = "0") -> int:
    r = client.post(
        "/v1/predict", files=[("files", ("p.png", png_bytes(1), "image/png"))], data={"threshold": threshold}
    )
    assert r.status_code == 200, r.text
    return int(r.json()["results"][0]["inspection_id"])


HUGE = [MAX_ID + 1, 2**64, 10**30, 10**400]


@pytest.mark.parametrize("value", [*HUGE, -1, 0, -(2**63) - 1])
def test_ids_out_of_range_are_422_and_never_500(client, value):
    upload(client)
    for r in (
        client.get(f"/v1/inspections/{value}"),
        client.post(f"/v1/inspections/{value}/verdict", json={"verdict": "confirmed"}),
    ):
        assert r.status_code == 422 and r.json()["error"] == "invalid_request", (value, r.text)


@pytest.mark.parametrize("value", [MAX_ID, MAX_ID - 1, 2**62, 99])
def test_ids_in_range_that_name_no_row_are_404(client, value):
    upload(client)
    assert client.get(f"/v1/inspections/{value}").status_code == 404
    r = client.post(f"/v1/inspections/{value}/verdict", json={"verdict": "confirmed"})
    assert r.status_code == 404 and r.json()["detail"] == f"no inspection with id {value}"


@pytest.mark.parametrize("offset", [MAX_ID, *HUGE, -1])
def test_offsets_past_sqlite_integers_are_empty_or_422(client, offset):
    upload(client)
    r = client.get("/v1/inspections", params={"offset": offset})
    if 0 <= offset <= MAX_ID:
        assert r.status_code == 200 and r.json()["items"] == [] and r.json()["total"] == 1
    else:
        assert r.status_code == 422, r.text


def day_forms(day: date) -> list[str]:
    """Every way ISO 8601 writes a date alone."""
    iso_year, week, weekday = day.isocalendar()
    return [
        day.isoformat(),
        day.strftime("%Y%m%d"),
        f"{iso_year}-W{week:02d}-{weekday}",
        f"{iso_year}W{week:02d}{weekday}",
    ]


def test_until_a_date_includes_that_whole_day_in_every_iso_form(client):
    ids = [upload(client), upload(client, "1")]
    today = datetime.fromisoformat(client.log.get(ids[0]).created_utc).date()
    everything = sorted(ids, reverse=True)
    for form in day_forms(today):
        assert ids_of(client, until=form) == everything, form  # 20261205 no longer drops the day
        assert ids_of(client, since=form) == everything, form
        assert ids_of(client, since=form, until=form) == everything, form
    for form in day_forms(today - timedelta(days=1)):
        assert ids_of(client, until=form) == [], form
    for form in day_forms(today + timedelta(days=1)):
        assert ids_of(client, since=form) == [], form
    assert ids_of(client, until=f"{today.isoformat()}T00:00:00Z") == []  # a time is a moment, not a day


def ids_of(client, **params) -> list[int]:
    r = client.get("/v1/inspections", params=params)
    assert r.status_code == 200, (params, r.text)
    return [i["id"] for i in r.json()["items"]]


@pytest.mark.parametrize(
    "value",
    [
        "yesterday",
        "2026-13-01",
        "20261305",
        "2026-02-30",
        "2026-12-05T25:00",
        "2026-12-05T23:59:60",
        "2026/12/05",
        "12/05/2026",
        "2026-12-05T10:00:00+25:00",
        "9999-12-31T23:00:00-05:00",  # past year 9999 in UTC
        "0001-01-01T00:00:00+01:00",  # before year 1 in UTC
        "2026-12-05\x00",
        "x" * 5000,
    ],
)
@pytest.mark.parametrize("name", ["since", "until"])
def test_an_unreadable_date_is_422_naming_the_value(client, name, value):
    r = client.get("/v1/inspections", params={name: value})
    assert r.status_code == 422 and r.json()["error"] == "invalid_request", (value, r.text)
    assert repr(value[:100]) in r.json()["detail"] and "ISO 8601" in r.json()["detail"]
    assert client.get("/v1/inspections.csv", params={name: value}).status_code == 422


def test_the_verdict_history_is_returned_with_the_inspection(client):
    inspection = upload(client)  # threshold 0: decided defect
    for body in (
        {"verdict": "confirmed", "operator": "ana", "comment": "crack at the rim"},
        {"verdict": "overridden", "label": "ok", "operator": "ben", "comment": "a shadow"},
    ):
        r = client.post(f"/v1/inspections/{inspection}/verdict", json=body)
        assert r.status_code == 200, r.text
    got = client.get(f"/v1/inspections/{inspection}").json()
    assert (got["verdict"], got["verdict_label"], got["operator"]) == ("overridden", "ok", "ben")  # the newest
    history = [(v["verdict"], v["label"], v["operator"], v["comment"]) for v in got["verdicts"]]
    assert history == [("confirmed", "defect", "ana", "crack at the rim"), ("overridden", "ok", "ben", "a shadow")]
    assert got["verdicts"][-1]["created_utc"] == got["verdict_utc"]
    listed = client.get("/v1/inspections").json()["items"][0]
    assert listed["id"] == inspection and "verdicts" not in listed  # pages stay one row per inspection


@pytest.mark.parametrize(("threshold", "predicted"), [("0", "defect"), ("1", "ok")])
def test_overriding_to_the_predicted_class_is_refused(client, threshold, predicted):
    inspection = upload(client, threshold)
    r = client.post(f"/v1/inspections/{inspection}/verdict", json={"verdict": "overridden", "label": predicted})
    assert r.status_code == 422 and f"already decided {predicted!r}: confirm it instead" in r.json()["detail"]
    assert client.get(f"/v1/inspections/{inspection}").json()["verdicts"] == []


@pytest.mark.parametrize(
    ("table", "event"), [("inspections", "INSERT"), ("inspections", "UPDATE"), ("verdicts", "INSERT")]
)
def test_a_log_that_cannot_be_written_is_503_and_the_next_write_succeeds(client, table, event):
    inspection = upload(client)
    with sqlite3.connect(client.log.path) as other:
        other.execute(f"CREATE TRIGGER injected BEFORE {event} ON {table} BEGIN SELECT RAISE(ABORT, 'disk gone'); END")
    if table == "inspections" and event == "INSERT":
        r = client.post("/v1/predict", files=[("files", ("p.png", png_bytes(2), "image/png"))])
    else:
        r = client.post(f"/v1/inspections/{inspection}/verdict", json={"verdict": "confirmed", "operator": "ana"})
    assert r.status_code == 503 and r.json()["error"] == "log_unavailable" and "disk gone" in r.json()["detail"]
    with sqlite3.connect(client.log.path) as other:
        other.execute("DROP TRIGGER injected")
    count = client.log.count()
    assert upload(client) and client.log.count() == count + 1  # the log writer goes on
    r = client.post(f"/v1/inspections/{inspection}/verdict", json={"verdict": "confirmed", "operator": "ana"})
    assert r.status_code == 200 and len(client.get(f"/v1/inspections/{inspection}").json()["verdicts"]) == 1


def test_too_many_files_has_the_same_error_name_in_the_api_and_the_readme(client):
    files = [("files", (f"{i}.png", b"x", "image/png")) for i in range(MAX_FILES + 1)]
    r = client.post("/v1/predict", files=files)
    assert r.status_code == 422 and r.json()["error"] == "too_many_files"
    readme = (Path(__file__).parents[3] / "README.md").read_text(encoding="utf-8")
    serve = readme[readme.index("\n## Serve") : readme.index("\n## QA Inspector")]
    (row,) = [line for line in serve.splitlines() if f"more than {MAX_FILES} files" in line]
    assert re.search(r'"error": "(\w+)"', row).group(1) == "too_many_files", row


def test_the_docs_page_can_take_the_key(client):
    schema = client.get("/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert {"type": "apiKey", "in": "header", "name": "X-API-Key"}.items() <= schemes["APIKeyHeader"].items()
    assert schemes["HTTPBearer"]["scheme"] == "bearer"
    for path, method in [
        ("/v1/predict", "post"),
        ("/v1/inspections", "get"),
        ("/v1/model", "get"),
        ("/metrics", "get"),
    ]:
        names = {name for s in schema["paths"][path][method]["security"] for name in s}
        assert names == {"APIKeyHeader", "HTTPBearer"}, path
    assert "security" not in schema["paths"]["/healthz"]["get"]
