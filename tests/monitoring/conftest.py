"""A migrated SQLite file for the portal under gunicorn (tests/monitoring/servers.py), made
once per run and copied for each server, since migrating takes seconds."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.monitoring.servers import Portal, migrate, start_portal


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    database = tmp_path_factory.mktemp("portal-db") / "template.sqlite3"
    migrate(database)
    return database


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory, migrated_sqlite: Path) -> Iterator[Portal]:
    """The portal under gunicorn with two workers, for the tests of one module."""
    tmp_path = tmp_path_factory.mktemp("gunicorn")
    database = tmp_path / "db.sqlite3"
    shutil.copy(migrated_sqlite, database)
    # One thread per worker: the tests show that what two worker processes count adds up, and
    # with threads one worker could serve every request of a test.
    server = start_portal(tmp_path, database, workers=2, GUNICORN_THREADS="1")
    yield server
    server.stop()
