"""The request guard: a Host of ours (DNS rebinding), no cross-site writes (CSRF), bounded headers."""

from __future__ import annotations

import socket

import pytest

from defectlens.serve.guard import MAX_HEADERS, HostPolicy, host_name, origin_of
from tests.unit.serve.conftest import png_bytes

ONE_FILE = [("files", ("a.png", png_bytes(0), "image/png"))]

FOREIGN_HOSTS = [
    "evil.example",
    "attacker.com:8000",
    "127.0.0.1.nip.io",
    "localhost.evil.example",
    "evil-localhost",
    "LOCALHOST.attacker.net:80",
    "192.168.1.5",
    "10.0.0.1:8000",
    "[fe80::1]:8000",
    "[::2]",
    "0.0.0.0",
    "xn--e1afmkfd.example",
]
OUR_HOSTS = ["127.0.0.1", "127.0.0.1:8000", "localhost", "LOCALHOST:1", "localhost.", "[::1]:8000", "127.0.0.2:9"]
MALFORMED_HOSTS = ["", ":8000", "a b", "::1", "host:port", "evil.example:80:80", "user@evil.example", "a/b", "[::1"]


@pytest.mark.parametrize("host", FOREIGN_HOSTS)
def test_a_foreign_host_is_refused_with_421(client, host):
    for method, path in (("get", "/v1/inspections"), ("get", "/"), ("get", "/v1/inspections.csv")):
        r = getattr(client, method)(path, headers={"Host": host})
        assert r.status_code == 421, (host, path)
        assert r.json()["error"] == "host_not_allowed" and "--allowed-host NAME" in r.json()["detail"]
    r = client.post("/v1/predict", files=ONE_FILE, headers={"Host": host})
    assert r.status_code == 421 and client.log.count() == 0
    assert client.get("/healthz", headers={"Host": host}).status_code == 200  # no data: any Host


@pytest.mark.parametrize("host", MALFORMED_HOSTS)
def test_a_malformed_host_is_refused_with_400(client, host):
    r = client.get("/v1/inspections", headers={"Host": host})
    assert r.status_code == 400 and r.json()["error"] == "bad_host", host


@pytest.mark.parametrize("host", OUR_HOSTS)
def test_loopback_names_are_served(client, host):
    assert client.get("/v1/inspections", headers={"Host": host}).status_code == 200, host


def test_allowed_hosts_add_names_and_star_allows_any(make_client):
    with make_client(allowed_hosts=("inspect.plant.local", "Line-PC-7.")) as (c, _):
        for host in ("inspect.plant.local:8000", "line-pc-7", "127.0.0.1"):
            assert c.get("/v1/model", headers={"Host": host}).status_code == 200, host
        assert c.get("/v1/model", headers={"Host": "evil.example"}).status_code == 421
    with make_client(allowed_hosts=("*",)) as (c, _):
        assert c.get("/v1/model", headers={"Host": "anything.example"}).status_code == 200


@pytest.mark.parametrize(
    ("bind", "allowed", "refused"),
    [
        ("127.0.0.1", ["localhost", "127.0.0.1", "::1", "127.9.9.9"], ["evil.example", "192.168.1.5"]),
        ("::1", ["localhost", "::1", "127.0.0.1"], ["evil.example", "10.0.0.2"]),
        ("192.168.1.5", ["192.168.1.5", "localhost"], ["evil.example", "192.168.1.6"]),
        ("inspect.plant", ["inspect.plant", "localhost"], ["evil.example", "192.168.1.6"]),
        ("0.0.0.0", ["192.168.1.5", "10.1.2.3", "fe80::1", socket.gethostname().lower()], ["evil.example"]),
        ("::", ["192.168.1.5", "::ffff:10.0.0.1"], ["evil.example", "localhost.evil.example"]),
    ],
)
def test_the_host_policy_follows_the_bind_address(bind, allowed, refused):
    policy = HostPolicy.for_bind(bind)
    assert all(policy.allows(name) for name in allowed), policy
    assert not any(policy.allows(name) for name in refused), policy


@pytest.mark.parametrize(
    ("value", "name"),
    [("Example.COM:8000", "example.com"), ("[::1]:80", "::1"), ("[::1]", "::1"), ("host.", "host"), (":1", None)],
)
def test_host_names_are_read_from_the_header(value, name):
    assert host_name(value) == name


FOREIGN_ORIGINS = [
    "https://evil.example",
    "http://127.0.0.1:1",  # another port on this machine is another origin
    "http://localhost:8000",  # the same service by another name is another origin
    "https://127.0.0.1:8000.evil.example",
    "null",  # a sandboxed frame or a file:// page
    "file://",
    "not a url",
]


@pytest.mark.parametrize("origin", FOREIGN_ORIGINS)
@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_a_cross_origin_write_is_refused_before_anything_is_logged(client, origin, method):
    r = client.request(method.upper(), "/v1/predict", files=ONE_FILE, headers={"Origin": origin})
    assert r.status_code == 403, (origin, method)
    assert r.json()["error"] == "cross_origin" and "--cors-origin ORIGIN" in r.json()["detail"]
    assert client.log.count() == 0
    # reads are not writes: a browser keeps a foreign page from reading the answer (no CORS)
    assert client.get("/v1/inspections", headers={"Origin": origin}).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},  # another port or subdomain of this site
        {"Referer": "https://evil.example/upload.html"},
        {"Referer": "http://127.0.0.1:1/"},
        {"Sec-Fetch-Site": "cross-site", "Referer": "http://127.0.0.1:8000/"},
    ],
)
def test_a_cross_site_write_without_origin_is_refused(client, headers):
    r = client.post("/v1/predict", files=ONE_FILE, headers=headers)
    assert r.status_code == 403 and client.log.count() == 0, headers


@pytest.mark.parametrize(
    "headers",
    [
        {},  # curl, a MES, a script: no browser page
        {"Origin": "http://127.0.0.1:8000"},  # the service's own page
        {"Origin": "HTTP://127.0.0.1:8000"},
        {"Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "none"},  # typed by the user
        {"Referer": "http://127.0.0.1:8000/"},
        {"Origin": "https://127.0.0.1:8000"},  # behind a TLS proxy that keeps the Host
    ],
)
def test_same_origin_and_non_browser_writes_pass(client, headers):
    r = client.post("/v1/predict", files=ONE_FILE, headers=headers)
    assert r.status_code == 200, (headers, r.text)


def test_a_cors_origin_may_write_and_a_verdict_is_guarded_too(make_client):
    with make_client(cors_origins=("https://mes.plant.example",)) as (c, log):
        r = c.post("/v1/predict", files=ONE_FILE, headers={"Origin": "https://mes.plant.example"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://mes.plant.example"
        inspection = r.json()["results"][0]["inspection_id"]
        verdict = {"verdict": "confirmed", "operator": "ana"}
        r = c.post(f"/v1/inspections/{inspection}/verdict", json=verdict, headers={"Origin": "https://evil.example"})
        assert r.status_code == 403 and log.get(inspection).verdict is None
        r = c.post(
            f"/v1/inspections/{inspection}/verdict", json=verdict, headers={"Origin": "https://mes.plant.example:443"}
        )
        assert r.status_code == 200 and log.get(inspection).verdict == "confirmed"


@pytest.mark.parametrize("count", [MAX_HEADERS + 1, 500, 2000])
def test_too_many_headers_are_refused_with_431(client, count):
    headers = [(f"x-h{i}", "v") for i in range(count)]
    r = client.get("/v1/inspections", headers=headers)
    assert r.status_code == 431 and r.json()["error"] == "headers_too_large"
    assert f"at most {MAX_HEADERS}" in r.json()["detail"]


@pytest.mark.parametrize("size", [65 * 1024, 1024 * 1024])
def test_too_large_headers_are_refused_with_431(client, size):
    r = client.get("/v1/inspections", headers={"X-Big": "a" * size})
    assert r.status_code == 431 and "at most 64 KiB" in r.json()["detail"]


def test_a_few_dozen_headers_pass(client):
    assert client.get("/v1/inspections", headers=[(f"x-h{i}", "v" * 100) for i in range(60)]).status_code == 200


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://Example.com:443/a?b", "https://example.com"),
        ("http://example.com:80", "http://example.com"),
        ("http://[::1]:8000/x", "http://[::1]:8000"),
        ("null", None),
        ("http://host:99999", None),
    ],
)
def test_origins_are_normalised(url, origin):
    assert origin_of(url) == origin
