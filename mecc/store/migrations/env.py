"""Alembic environment: the database URL comes from the settings, never from alembic.ini."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from mecc.platform.db import Base, make_engine
from mecc.store import models  # noqa: F401  (registers the tables on Base.metadata)

config = context.config
url = config.get_main_option("sqlalchemy.url")


def run_migrations_offline() -> None:
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True,
                      render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    if url is None:
        raise RuntimeError("mecc.store.migrate sets sqlalchemy.url; run migrations through it")
    engine = make_engine(url)
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


def _run(connection: Connection) -> None:
    # Batch mode lets later migrations alter tables on SQLite too.
    context.configure(connection=connection, target_metadata=Base.metadata,
                      render_as_batch=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
