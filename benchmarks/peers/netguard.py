"""Network guard: a sys.addaudithook that logs and BLOCKS every network attempt in this process.

Blocked (raise PermissionError, logged as BLOCKED):
  socket.connect / socket.connect_ex / socket.sendto / socket.sendmsg to an AF_INET/AF_INET6 address,
  socket.getaddrinfo / socket.gethostbyname* / socket.gethostbyaddr (DNS), urllib.Request, http.client.connect,
  ftplib/smtplib/... connects.
Logged only (not blocked): subprocess.Popen / os.system / os.exec* / os.posix_spawn (so pip/uv/curl
  subprocesses would show up), AF_UNIX connects, socket.gethostname.

Usage:
  import netguard; netguard.install(log_path)    # before importing anything that may touch the network
  ... ; netguard.summary() -> dict
The hook survives fork() (DataLoader workers), and each event is appended to log_path as a JSON line.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time

_LOG: str | None = None
_EVENTS: list[dict] = []
BLOCK_EVENTS = {
    "socket.getaddrinfo",
    "socket.gethostbyname",
    "socket.gethostbyname_ex",
    "socket.gethostbyaddr",
    "socket.getnameinfo",
    "urllib.Request",
    "http.client.connect",
    "ftplib.connect",
    "smtplib.connect",
    "poplib.connect",
    "imaplib.open",
    "nntplib.connect",
    "telnetlib.Telnet.open",
    "webbrowser.open",
}
SOCKET_ADDR_EVENTS = {"socket.connect", "socket.connect_ex", "socket.sendto", "socket.sendmsg"}
NET_TOOLS = {"pip", "pip3", "uv", "curl", "wget", "git", "apt-get", "conda"}
LOG_ONLY = {
    "subprocess.Popen",
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "socket.gethostname",
    "socket.__new__",
}


def _record(kind: str, event: str, args) -> None:
    try:
        a = repr(args)[:300]
    except Exception:
        a = "<unrepr>"
    rec = {"t": round(time.time(), 3), "pid": os.getpid(), "kind": kind, "event": event, "args": a}
    _EVENTS.append(rec)
    if _LOG:
        with open(_LOG, "a") as f:  # noqa: PTH123  (plain builtins inside an audit hook: no pathlib machinery)
            f.write(json.dumps(rec) + "\n")


def _hook(event: str, args) -> None:
    if event in BLOCK_EVENTS:
        _record("BLOCKED", event, args)
        raise PermissionError(f"netguard: network blocked ({event})")
    if event in SOCKET_ADDR_EVENTS:
        sock = args[0]
        fam = getattr(sock, "family", None)
        if fam in (socket.AF_INET, socket.AF_INET6):
            _record("BLOCKED", event, args)
            raise PermissionError(f"netguard: network blocked ({event} {args[1:]!r})")
        _record("local", event, args)
        return
    if event == "socket.bind":  # local bind (e.g. urllib3's IPv6 probe binds ::1): not an outgoing attempt
        _record("local", event, args)
        return
    if event == "subprocess.Popen":
        argv = [os.path.basename(str(x)) for x in (args[1] or [])] if len(args) > 1 else []  # noqa: PTH119
        if (
            os.path.basename(str(args[0])) in NET_TOOLS  # noqa: PTH119
            or (argv and argv[0] in NET_TOOLS)
            or ("-m" in argv and "pip" in argv)
        ):
            _record("BLOCKED", event, args)
            raise PermissionError(f"netguard: network tool subprocess blocked {argv}")
    if event == "socket.__new__":
        # args = (sock, family, type, proto); log only inet sockets being created
        if len(args) > 1 and args[1] in (socket.AF_INET, socket.AF_INET6):
            _record("created", event, args[1:])
        return
    if event in LOG_ONLY or event.startswith("os.exec") or event.startswith("os.spawn"):
        _record("log", event, args)


def install(log_path: str | None = None, simulate_online: bool = False) -> None:
    """simulate_online: answer Ultralytics' is_online() DNS probe (one.one.one.one / dns.google) with a fake address
    in pure Python (no real lookup), so code paths gated on ONLINE run and their attempts get caught and logged."""
    global _LOG
    _LOG = log_path
    if simulate_online:
        real = socket.getaddrinfo

        def fake(host, *a, **k):
            if host in ("one.one.one.one", "dns.google"):
                _record("simulated", "socket.getaddrinfo(fake answer)", (host,))
                return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.1", 0))]
            return real(host, *a, **k)

        socket.getaddrinfo = fake
    if log_path:
        open(log_path, "a").close()  # noqa: PTH123
    sys.addaudithook(_hook)


def summary() -> dict:
    blocked = [e for e in _EVENTS if e["kind"] == "BLOCKED"]
    created = [e for e in _EVENTS if e["kind"] == "created"]
    sim = [e for e in _EVENTS if e["kind"] == "simulated"]
    procs = [e for e in _EVENTS if e["kind"] == "log" and e["event"] != "socket.gethostname"]
    return {
        "blocked_network_attempts": len(blocked),
        "inet_sockets_created": len(created),
        "subprocesses_or_exec": len(procs),
        "simulated_online_probes": len(sim),
        "events": sim + blocked + created + procs,
    }
