"""Where the inspection log lives: one location, a path or a database URL, and the errors that name it.

``--db`` (``DEFECTLENS_DB``, a station file's ``log:``) takes a file path or ``sqlite:///PATH`` (SQLite, the
default) or ``postgresql://USER:PASSWORD@HOST:PORT/DB`` (also ``postgresql+psycopg://``): PostgreSQL through
SQLAlchemy 2 Core and psycopg 3, from the optional ``[postgres]`` extra, imported only when such a URL is
opened. A :class:`DatabaseURL` prints with its password masked, so a message, a log line or a window that
shows where the log is never shows the secret.

A database that fails mid-run raises :class:`LogUnavailable`, a ``sqlite3.OperationalError``: whatever
answers a failed SQLite write (the service's 503, the Inspector's message) answers a failed PostgreSQL
one the same way, and in both cases nothing of the write was committed.
"""

from __future__ import annotations

import importlib
import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from defectlens.core.errors import DefectlensError

#: The URL schemes a PostgreSQL log is given by (psycopg 3 is the driver either way).
POSTGRES_SCHEMES = ("postgresql", "postgresql+psycopg", "postgres")
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]+)://")
_FORMS = "a file path, sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
MASK = "***"


class LogUnavailable(sqlite3.OperationalError):
    """The log's database could not be reached or refused a statement; nothing of the write was committed."""


@dataclass(frozen=True)
class DatabaseURL:
    """A PostgreSQL log's URL; ``str()`` and ``repr()`` mask the password (:attr:`secret` keeps it)."""

    secret: str = field(repr=False)

    def __str__(self) -> str:
        return mask(self.secret)

    def __repr__(self) -> str:
        return f"DatabaseURL({mask(self.secret)!r})"

    @property
    def name(self) -> str:
        """The database's name (what a window shows beside a file's name)."""
        return urlsplit(self.secret).path.lstrip("/") or "(the user's default database)"

    @property
    def sqlalchemy_url(self) -> str:
        """The URL with the psycopg 3 driver named, as SQLAlchemy wants it."""
        _, rest = self.secret.split("://", 1)
        return f"postgresql+psycopg://{rest}"


#: What ``--db`` resolves to: a SQLite file, or a PostgreSQL database.
Location = Path | DatabaseURL


def parse_location(value: str | Path | DatabaseURL) -> Location:
    """A path, ``sqlite:///PATH`` or a PostgreSQL URL, as the log's location.

    Raises:
        DefectlensError: for an empty value, a URL of another database, or ``sqlite://`` without a path.
    """
    if isinstance(value, (Path, DatabaseURL)):
        return value
    text = value.strip()
    if not text:
        raise DefectlensError(f"the inspection log location is empty: give {_FORMS}")
    found = _SCHEME.match(text)
    if found is None:
        return Path(text).expanduser()
    scheme = found.group(1).lower()
    if scheme in POSTGRES_SCHEMES:
        return DatabaseURL(text)
    if scheme == "sqlite":
        path = text[len("sqlite:///") :] if text.lower().startswith("sqlite:///") else ""
        if not path:
            raise DefectlensError(f"{text}: a SQLite log needs a file: sqlite:///relative.sqlite or sqlite:////abs")
        return Path(path).expanduser()
    raise DefectlensError(f"{mask(text)}: not a database the inspection log runs on; give {_FORMS}")


def mask(url: str) -> str:
    """``url`` with any password (in the user part or a ``password=`` query option) replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return re.sub(r":[^:@/]*@", f":{MASK}@", url)
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        if ":" in user:
            user = f"{user.split(':', 1)[0]}:{MASK}"
        netloc = f"{user}@{host}"
    query = parts.query
    if query:
        pairs = [(k, MASK if k.lower() == "password" else v) for k, v in parse_qsl(query, keep_blank_values=True)]
        query = urlencode(pairs, safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def require_postgres(url: DatabaseURL) -> None:
    """Import the ``[postgres]`` extra's packages, or say how to install them.

    Raises:
        DefectlensError: naming the missing package and ``pip install 'defectlens[postgres]'``.
    """
    for module in ("sqlalchemy", "psycopg", "alembic"):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise DefectlensError(
                f"{url}: the inspection log on PostgreSQL needs the {module!r} package ({exc}): "
                "pip install 'defectlens[postgres]'"
            ) from None


def first_line(exc: BaseException) -> str:
    """The driver's message without its SQL and background links (one line a person reads)."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return text[0] if text else type(orig).__name__
