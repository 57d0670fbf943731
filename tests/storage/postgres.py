"""PostgreSQL for the storage and CLI tests: a fresh database per test session.

The server comes from `JIB_TEST_POSTGRES_URL` (start one with `tests/storage/postgres.sh`). When
the variable is absent the PostgreSQL tests are skipped on a developer's machine, but fail in CI
(`CI` set), so the PostgreSQL half of the suite can never silently not run there.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, make_url, text

ENV_VAR = "JIB_TEST_POSTGRES_URL"

_TABLES = (
    "jib_blobs",
    "jib_tags",
    "jib_records",
    "jib_schema_version",
    "jib_response_cache",
    "jib_response_cache_stats",
    "jib_provider_batches",
)


def postgres_server_url() -> str:
    """The admin URL of the test server, or skip/fail as the module docs say."""
    url = os.environ.get(ENV_VAR, "").strip()
    if url:
        return url
    message = (
        f"{ENV_VAR} is not set; start a server with "
        f'`export {ENV_VAR}="$(bash tests/storage/postgres.sh start)"`'
    )
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database created for this test session on the test server, dropped at the end."""
    server = make_url(postgres_server_url())
    if server.drivername == "postgresql":
        server = server.set(drivername="postgresql+psycopg")
    name = f"jib_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def empty_postgres(url: str) -> str:
    """Drop jib's tables from the database at `url`, so a test starts from nothing."""
    engine = create_engine(url)
    with engine.begin() as connection:
        for table in _TABLES:
            connection.execute(text(f"DROP TABLE IF EXISTS {table} CASCADE"))
    engine.dispose()
    return url
