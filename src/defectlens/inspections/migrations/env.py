"""Alembic's environment for the inspection log: run on the connection the log hands over (no ``alembic.ini``),
or, from the ``alembic`` command line, on ``-x url=DATABASE_URL``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

config = context.config


def _run(connection) -> None:
    context.configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:  # alembic -c ... -x url=postgresql+psycopg://... upgrade head
    engine = create_engine(context.get_x_argument(as_dictionary=True)["url"])
    with engine.begin() as conn:
        _run(conn)
