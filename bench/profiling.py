"""What the server's processes do while a path runs: the CPU time they use and their peak memory
(both from /proc), and where their CPU time goes (py-spy, `--profile`)."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

from bench.options import RESULTS, ROOT
from bench.servers import Server

# The unit of the CPU times in /proc/<pid>/stat.
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_ticks(stat: str) -> int:
    """utime + stime of a process (all its threads), in clock ticks, from its /proc/<pid>/stat
    line. Fields are counted from the last ")": the command name before it, in parentheses, may
    itself hold spaces and parentheses."""
    fields = stat[stat.rindex(")") + 1 :].split()
    # fields[0] is field 3 of proc(5) (the state); utime and stime are fields 14 and 15.
    return int(fields[11]) + int(fields[12])


def server_cpu(server: Server) -> dict[int, int]:
    """CPU ticks used so far by the gunicorn master and each worker alive now, by pid."""
    ticks = {}
    for pid in (server.process.pid, *server.worker_pids()):
        with contextlib.suppress(OSError, ValueError, IndexError):  # a process that just exited
            ticks[pid] = cpu_ticks(Path(f"/proc/{pid}/stat").read_text())
    return ticks


def cpu_seconds(before: dict[int, int], after: dict[int, int]) -> float:
    """CPU seconds the server used between two readings of `server_cpu`: for each process alive at
    the second, what it used since the first (all of it if it started in between). A worker that
    died in between takes its CPU time with it; gunicorn here recycles none (no max_requests)."""
    return sum(ticks - before.get(pid, 0) for pid, ticks in after.items()) / CLOCK_TICKS


class RssSampler:
    """The peak resident memory of each gunicorn worker, read from /proc every 0.2 s."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.peaks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in self.server.worker_pids():
                with contextlib.suppress(OSError, ValueError):
                    status = Path(f"/proc/{pid}/status").read_text()
                    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
                    if match:
                        self.peaks[pid] = max(self.peaks.get(pid, 0), int(match[1]))
            self._stop.wait(0.2)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class Profiler:
    """py-spy sampling every gunicorn worker while a path runs (`--profile`): the collapsed stacks
    in bench/results/profile-<path>.txt, and where the samples were by library, printed. Only
    samples of threads holding the GIL: time spent waiting on PostgreSQL or Redis is not in them."""

    def __init__(self, server: Server, key: str, seconds: int) -> None:
        self.output = RESULTS / f"profile-{key}.txt"
        py_spy = Path(sys.executable).with_name("py-spy")
        command = [str(py_spy), "record", "--pid", str(server.process.pid), "--subprocesses", "--gil", "--rate", "200"]
        command += ["--duration", str(seconds), "--format", "raw", "--output", str(self.output), "--nonblocking"]
        self.command = command

    def __enter__(self) -> Profiler:
        RESULTS.mkdir(exist_ok=True)
        self.process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # noqa: S603
        return self

    def __exit__(self, *exc: object) -> None:
        _, error = self.process.communicate(timeout=120)
        if self.process.returncode != 0 or not self.output.exists():
            print(f"  py-spy failed (it needs ptrace: root or CAP_SYS_PTRACE): {error.decode()[-300:]}")
            return
        print(f"  profile in {self.output.relative_to(ROOT)}; on-CPU samples by library:")
        for share, name in top_frames(self.output.read_text()):
            print(f"    {share:5.1%}  {name}")


# Where a sample's innermost frame is, by the start of its file's path: the libraries that a
# request's CPU time goes to. The first prefix that matches wins.
AREAS = (
    ("django/template", "Django templates"),
    ("django/db", "Django ORM"),
    ("psycopg", "psycopg (PostgreSQL client)"),
    ("redis/", "Redis client"),
    ("django_redis", "Redis client"),
    ("sentry_sdk", "Sentry SDK"),
    ("prometheus_client", "Prometheus client"),
    ("django_prometheus", "Prometheus client"),
    ("django/contrib/sessions", "Django sessions and auth"),
    ("django/contrib/auth", "Django sessions and auth"),
    ("django/", "Django, other"),
    ("allauth", "allauth"),
    ("ninja", "django-ninja and pydantic"),
    ("pydantic", "django-ninja and pydantic"),
    ("gunicorn", "gunicorn"),
    ("portal/", "the portal's own code"),
    ("members/", "the portal's own code"),
    ("monitoring/", "the portal's own code"),
    ("subscriptions/", "the portal's own code"),
)


def top_frames(collapsed: str) -> list[tuple[float, str]]:
    """Where the on-CPU samples were, by library (the innermost frame's), from py-spy's
    collapsed stacks ("frame;frame;... count" a line, each frame "function (path:line)")."""
    areas: dict[str, int] = {}
    total = 0
    for line in collapsed.splitlines():
        stack, _, samples = line.rpartition(" ")
        if not samples.isdigit():
            continue
        leaf = re.search(r"\(([^():]+)(?::\d+)?\)$", stack.rsplit(";", 1)[-1])
        path = leaf[1] if leaf else ""
        area = next((name for prefix, name in AREAS if path.startswith(prefix)), "Python and other libraries")
        areas[area] = areas.get(area, 0) + int(samples)
        total += int(samples)
    return sorted(((count / total, area) for area, count in areas.items()), reverse=True) if total else []
