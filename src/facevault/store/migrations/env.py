"""Alembic environment. ``Store.create_schema`` passes its open connection in
``config.attributes["connection"]``; the ``alembic`` command line works too, given
``-x url=postgresql://...`` (or ``sqlalchemy.url`` in an ini file)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from facevault.store.schema import metadata

config = context.config


def _url() -> str:
    from facevault.store.database import normalize_url

    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("give the database: alembic -x url=postgresql://... upgrade head")
    return normalize_url(url)


def _configure(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=metadata,
        compare_type=True,
        # SQLite cannot ALTER most things in place: let Alembic copy-and-move tables there.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
elif (conn := config.attributes.get("connection")) is not None:
    _configure(conn)
else:
    engine = create_engine(_url())
    try:
        with engine.begin() as conn:
            _configure(conn)
    finally:
        engine.dispose()
