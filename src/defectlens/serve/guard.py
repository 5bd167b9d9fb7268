"""What a request must pass before the app sees it: bounded headers, a Host of ours, a same-origin write.

:class:`RequestGuard` is a pure ASGI middleware (it reads no body), outermost after the metrics:

1. **Headers**: more than :data:`MAX_HEADERS` headers, or more than :data:`MAX_HEADER_BYTES` of them, get 431.
   (The server's protocol also stops reading a request head past that size: see :mod:`defectlens.serve.protocol`.)
2. **Host** (DNS rebinding: a page on ``attacker.example`` that re-points its name at this machine reads the
   log through the victim's browser; the browser still sends ``Host: attacker.example``): the Host must be
   one the service answers to (:class:`HostPolicy`), else 421; no Host, or a malformed one, 400. ``/healthz``
   and ``/readyz`` carry no data and answer any Host (orchestrators probe by address).
3. **Origin** (cross-site request forgery: without a key, any page the operator visits could post uploads
   and verdicts into the log with a ``no-cors`` form): a state-changing request (POST, PUT, PATCH, DELETE)
   from a browser must come from this service's own page or an origin allowed by ``--cors-origin``, else 403.
   A browser names the page in ``Origin``; without it, ``Sec-Fetch-Site`` or a ``Referer`` decides. A client
   that sends none of them (curl, a MES, a script) is no browser page and passes.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from defectlens.serve.config import is_loopback
from defectlens.serve.limits import send_error

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

#: Most request headers accepted (browsers send about 20).
MAX_HEADERS = 100
#: Most bytes of request line and headers accepted.
MAX_HEADER_BYTES = 64 * 1024
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Paths that answer any Host: they carry no data.
ANY_HOST = frozenset({"/healthz", "/readyz"})
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_WILDCARDS = frozenset({"", "0.0.0.0", "::"})


@dataclass(frozen=True)
class Refusal:
    """An answer given instead of the app's: status, error kind, what to do."""

    status: int
    error: str
    detail: str


@dataclass(frozen=True)
class HostPolicy:
    """The ``Host`` names the service answers to.

    Attributes:
        names: accepted names and addresses (lower case, no port).
        any_address: accept any IP address as Host (bound to every interface: a browser that sends an address
            reached this machine by it, and an address is never a rebound name).
        anything: accept every Host (``--allowed-host '*'``: a proxy in front checks it).
    """

    names: frozenset[str]
    any_address: bool = False
    anything: bool = False

    @classmethod
    def for_bind(cls, host: str, allowed: tuple[str, ...] = ()) -> HostPolicy:
        """The policy for a service bound to ``host``: loopback names (and the bind host itself), plus ``allowed``;
        bound to every interface, also this machine's name and any address."""
        extra = {_normal(a) for a in allowed}
        names = set(LOOPBACK_NAMES) | extra
        bind = _normal(host)
        wildcard = bind in _WILDCARDS
        if wildcard:
            names.add(socket.gethostname().lower())  # no DNS lookup: the line PC may be offline
        else:
            names.add(bind)
        return cls(frozenset(names - {"*"}), any_address=wildcard, anything="*" in extra)

    def allows(self, name: str) -> bool:
        if self.anything or name in self.names or is_loopback(name):
            return True
        return self.any_address and _is_address(name)


def _normal(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def host_name(value: str) -> str | None:
    """The name in a ``Host`` header (``name``, ``name:port``, ``[v6]:port``), lower case; None when malformed."""
    value = value.strip().lower()
    if value.startswith("["):
        name, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None
        port = rest[1:]
    elif value.count(":") > 1:
        return None  # an IPv6 address must be in brackets
    else:
        name, _, port = value.partition(":")
    if not name or (port and not port.isdigit()) or any(c in name for c in "/\\@ \t"):
        return None
    return name.rstrip(".")


def _headers(scope: Scope) -> dict[bytes, list[bytes]]:
    found: dict[bytes, list[bytes]] = {}
    for key, value in scope["headers"]:
        found.setdefault(key, []).append(value)
    return found


def header_refusal(scope: Scope) -> Refusal | None:
    """431 for too many headers or too many header bytes."""
    raw = scope["headers"]
    if len(raw) > MAX_HEADERS:
        return Refusal(431, "headers_too_large", f"{len(raw)} request headers; at most {MAX_HEADERS} are accepted")
    size = sum(len(k) + len(v) + 4 for k, v in raw)  # "name: value\r\n"
    if size > MAX_HEADER_BYTES:
        kib = MAX_HEADER_BYTES // 1024
        return Refusal(431, "headers_too_large", f"request headers of {size} bytes; at most {kib} KiB are accepted")
    return None


def host_refusal(scope: Scope, headers: dict[bytes, list[bytes]], policy: HostPolicy) -> Refusal | None:
    """400 without one well-formed ``Host``; 421 for a Host the service does not answer to."""
    if scope["path"] in ANY_HOST:
        return None
    given = headers.get(b"host", [])
    if len(given) != 1:
        return Refusal(400, "bad_host", "a request needs exactly one Host header")
    value = given[0].decode("latin-1")
    name = host_name(value)
    if name is None:
        return Refusal(400, "bad_host", f"Host header {value[:100]!r} is not a host name or address")
    if policy.allows(name):
        return None
    return Refusal(
        421,
        "host_not_allowed",
        f"this service does not answer to the name {name[:100]!r} (a page may have pointed its own name at this "
        "machine); if that name is yours, start the service with --allowed-host NAME",
    )


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of a URL, default port dropped, lower case (None for ``null`` or no host)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    suffix = f":{port}" if port is not None and port != default else ""
    return f"{parts.scheme.lower()}://{host}{suffix}"


def _same_site(origin: str | None, host: str, allowed: frozenset[str]) -> bool:
    """True when ``origin`` is this service (its host and port, any scheme: a TLS proxy may front it) or allowed."""
    if origin is None:
        return False
    if "*" in allowed or origin in allowed:
        return True
    mine = {origin_of(f"{scheme}://{host}") for scheme in ("http", "https")}
    return origin.split("://", 1)[-1] in {m.split("://", 1)[-1] for m in mine if m}


def origin_refusal(scope: Scope, headers: dict[bytes, list[bytes]], allowed: frozenset[str]) -> Refusal | None:
    """403 for a state-changing request a browser sent from a page that is neither ours nor allowed."""
    method = str(scope["method"])
    if method not in STATE_CHANGING:
        return None
    host = headers.get(b"host", [b""])[0].decode("latin-1")
    origin = headers.get(b"origin", [None])[0]
    site = headers.get(b"sec-fetch-site", [b""])[0].decode("latin-1").lower()
    referer = headers.get(b"referer", [None])[0]
    if origin is not None:
        sender = origin.decode("latin-1")
        foreign = not _same_site(origin_of(sender), host, allowed)
    elif site in ("cross-site", "same-site"):
        sender, foreign = f"a {site} page", True
    elif referer is not None:
        sender = referer.decode("latin-1")
        foreign = not _same_site(origin_of(sender), host, allowed)
    else:
        return None  # no browser page sent this (curl, a script, a MES)
    if not foreign:
        return None
    return Refusal(
        403,
        "cross_origin",
        f"a {method} from {sender[:200]!r} is refused: uploads and verdicts are taken only from this service's own "
        "page, or from an origin the service was started with (--cors-origin ORIGIN)",
    )


class RequestGuard:
    """Refuse, before the app, requests with unbounded headers, a foreign Host, or a cross-site write."""

    def __init__(self, app: ASGIApp, *, hosts: HostPolicy, cors_origins: tuple[str, ...] = ()):
        self.app = app
        self.hosts = hosts
        self.origins = frozenset("*" if o.strip() == "*" else (origin_of(o) or o) for o in cors_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = header_refusal(scope)
        if refusal is None:
            headers = _headers(scope)
            refusal = host_refusal(scope, headers, self.hosts) or origin_refusal(scope, headers, self.origins)
        if refusal is not None:
            await send_error(send, refusal.status, error=refusal.error, detail=refusal.detail, close=True)
            return
        await self.app(scope, receive, send)
