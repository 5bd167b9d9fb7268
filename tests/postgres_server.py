"""A private PostgreSQL server for the tests and ``benchmarks/bench_log.py``: ``initdb`` in a temporary folder,
``pg_ctl start`` on 127.0.0.1 at a free port, trust authentication, stopped (and removed) when done.

The Debian ``postgresql`` package (``make sysdeps``) puts the tools in ``/usr/lib/postgresql/<version>/bin``.
PostgreSQL refuses to run as root, so under root (CI) the server runs as the ``postgres`` user (``runuser``), in a
folder that user owns.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.require import import_or_missing, missing


def find_bin() -> Path | None:
    """The newest PostgreSQL's bin folder with ``initdb`` and ``pg_ctl``, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Server:
    """A running server: ``url(db)`` names one of its databases (user ``postgres``, no password)."""

    port: int
    bin: Path
    data: Path
    as_user: tuple[str, ...]

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "log") -> str:
        """A new empty database; its URL."""
        import psycopg

        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [*self.as_user, str(self.bin / "pg_ctl"), "-D", str(self.data), *args]
        return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=60)

    def stop(self, mode: str = "fast") -> None:
        self.ctl("stop", "-m", mode, "-w", check=False)

    def start(self) -> None:
        options = f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.data}"
        options += " -c max_connections=200"
        self.ctl("start", "-w", "-l", str(self.data / "server.log"), "-o", options)


@contextmanager
def running_server(*, fsync: bool = True) -> Iterator[Server]:
    """Start a private server; stop it and remove its folder on exit.

    Raises:
        RuntimeError: without the PostgreSQL tools, or when the server does not start (its log is quoted).
    """
    bin_dir = find_bin()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL is not installed (initdb not found): make sysdeps installs it")
    root = Path(tempfile.mkdtemp(prefix="defectlens-pg-"))
    data = root / "data"
    as_user: tuple[str, ...] = ()
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
        as_user = ("runuser", "-u", "postgres", "--")
    server = Server(_free_port(), bin_dir, data, as_user)
    try:
        init = [*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]
        subprocess.run([*init, "--no-sync"], check=True, capture_output=True, text=True, timeout=120)
        if not fsync:
            with (data / "postgresql.conf").open("a") as conf:
                conf.write("\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\n")
        try:
            server.start()
        except subprocess.CalledProcessError as exc:
            log = data / "server.log"
            text = log.read_text() if log.exists() else ""
            raise RuntimeError(f"PostgreSQL did not start: {exc.stderr}\n{text}") from None
        yield server
    finally:
        if data.exists():
            server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Server]:
    """A private server for the session (fsync off: the tests check logic, ``bench_log.py`` durability costs);
    skipped without PostgreSQL or the ``[postgres]`` extra, a failure under ``DEFECTLENS_REQUIRE_POSTGRES=1``."""
    for module in ("sqlalchemy", "psycopg", "alembic"):
        import_or_missing(module, flag="POSTGRES", reason="the log on PostgreSQL needs the [postgres] extra")
    if find_bin() is None:
        missing("POSTGRES", "PostgreSQL is not installed (no initdb; make sysdeps installs it)")
    with running_server(fsync=False) as server:
        yield server


def drop_database(server: Server, url: str) -> None:
    """Drop a test's database, closing whatever connections the test left open."""
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
