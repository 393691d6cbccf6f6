"""The read replica (DATABASE_REPLICA_URL): heavy reads go to it, everything else to the primary.

The replica is played by a second database on the same server, made as a copy of the primary
and then left behind by one write, as a lagging replica would be: which of the two a read went
to shows in what it counts. The portal runs in its own process, configured as in production."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest

from tests.monitoring.servers import manage, migrate, scratch_database

SETUP = """
from members.services import create_member
create_member(email="staff@example.com", password=None, is_staff=True, is_superuser=True)
for n in range(3):
    create_member(email=f"member{n}@example.com", password=None)
"""
LATE_MEMBER = """
from members.services import create_member
create_member(email="late@example.com", password=None)
"""
# What the portal reads, each way, in one process configured with the replica.
PROBE = """
import json, logging
from django.test import Client
from members.models import Member
from monitoring import checks
from monitoring.staff_dashboard import staff_numbers
from monitoring.health import run_checks
from core.db_router import heavy_reads

with heavy_reads() as alias:
    heavy_count = Member.objects.count()
client = Client()
client.force_login(Member.objects.get(email="staff@example.com"))
export = client.get("/admin/members/member/export.csv", secure=True)
lines = b"".join(export.streaming_content).decode().splitlines()
report = run_checks(checks.ALL)
replica = report.get("database_replica")
print("PROBE " + json.dumps({
    "alias": alias,
    "count": Member.objects.count(),
    "heavy_count": heavy_count,
    "dashboard_members": staff_numbers().members,
    "export_status": export.status_code,
    "export_rows": len(lines) - 1,
    "replica_state": replica.state.value if replica else None,
    "replica_summary": replica.summary if replica else None,
    "overall": report.state.value,
}))
"""


@dataclass
class Databases:
    primary: str
    replica: str


pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def databases() -> Iterator[Databases]:
    base = urlsplit(os.environ["DATABASE_URL"]).path.lstrip("/")
    with scratch_database(f"{base}_primary") as primary:
        migrate(primary)
        manage(primary, "shell", "-c", SETUP)
        # The replica: a copy of the primary as it was, before the write below reached it.
        with scratch_database(f"{base}_replica", copy_of=f"{base}_primary") as replica:
            manage(primary, "shell", "-c", LATE_MEMBER)
            yield Databases(primary, replica)


def probe(primary: str, **extra: str) -> dict[str, object]:
    output = manage(
        primary,
        "shell",
        "-c",
        PROBE,
        ALLOWED_HOSTS="testserver",
        ADMIN_REQUIRE_MFA="false",
        **extra,
    )
    line = next(line for line in output.splitlines() if line.startswith("PROBE "))
    result: dict[str, object] = json.loads(line.removeprefix("PROBE "))
    return result


def test_heavy_reads_go_to_the_replica_and_the_rest_to_the_primary(databases: Databases) -> None:
    seen = probe(databases.primary, DATABASE_REPLICA_URL=databases.replica)
    assert seen["alias"] == "replica"
    # Ordinary reads see the primary: five members, the late one included.
    assert seen["count"] == 5
    # The staff dashboard's aggregates, heavy reads and the CSV export read the replica's four.
    assert seen["heavy_count"] == 4
    assert seen["dashboard_members"] == 4
    assert (seen["export_status"], seen["export_rows"]) == (200, 4)
    # The status page shows the replica; a copy that is not a standby has no lag to report.
    assert seen["replica_state"] == "ok"
    assert "not a standby" in str(seen["replica_summary"])
    assert seen["overall"] == "ok"


def test_without_a_replica_every_read_goes_to_the_primary(databases: Databases) -> None:
    seen = probe(databases.primary)
    assert seen["alias"] == "default"
    assert (seen["count"], seen["heavy_count"], seen["dashboard_members"], seen["export_rows"]) == (5, 5, 5, 5)
    assert seen["replica_state"] is None  # no replica check without a replica


def test_an_unreachable_replica_sends_heavy_reads_to_the_primary_and_degrades_the_status(
    databases: Databases,
) -> None:
    missing = databases.replica.rsplit("/", 1)[0] + "/no_such_replica_database"
    seen = probe(databases.primary, DATABASE_REPLICA_URL=missing)
    assert seen["alias"] == "default"
    assert (seen["heavy_count"], seen["dashboard_members"], seen["export_rows"]) == (5, 5, 5)
    assert seen["replica_state"] == "down"
    # Not critical: the portal still serves, degraded.
    assert seen["overall"] == "degraded"
