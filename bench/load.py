"""The load: wrk (bench/wrk.lua) from its own process against one server, and what one path
measures there (`Result`): throughput, latency (wrk's, and the portal's own histogram's p95),
errors, and per request the server's CPU time, the SQL and the cache."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.options import PROXY, WRK_SCRIPT, Options
from bench.paths import Path_, Request
from bench.profiling import Profiler, RssSampler, cpu_seconds, server_cpu
from bench.servers import Server, bucket_delta, histogram_quantile


@dataclass
class Result:
    key: str
    title: str
    server: str
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    statuses: dict[str, int]
    laps: int
    statements_per_request: float | None
    queries_per_request: float | None
    cache_hit_rate: float | None
    cache_reads_per_request: float | None
    peak_rss_mb: float | None
    # CPU time of the gunicorn master and workers over the load, per request wrk completed.
    cpu_ms: float | None
    # p95 of the portal's portal_request_duration_seconds over the load (None if it saw no request).
    portal_p95_ms: float | None
    baseline_rps: float | None = None  # the baseline measured just before this path
    ratio: float | None = None  # rps / baseline_rps
    baseline_cpu_ms: float | None = None  # the CPU per request of that same baseline
    cpu_ratio: float | None = None  # cpu_ms / baseline_cpu_ms
    python_calls: int | None = None  # per request, in process (bench/request_cost.py); GET paths only


# What a table shows for a figure that a path does not have (as issue 21's tables do).
MISSING = "\N{EN DASH}"


def optional(value: float | None, spec: str) -> str:
    return MISSING if value is None else format(value, spec)


def one_line(result: Result) -> str:
    baseline = f" ({result.ratio:.2f} of the baseline's {result.baseline_rps:,.0f})" if result.ratio else ""
    cpu = f" ({result.cpu_ratio:.1f}x the baseline's)" if result.cpu_ratio else ""
    return (
        f"{result.title}: {optional(result.cpu_ms, '.2f')} ms CPU/req{cpu}, {result.rps:,.0f} req/s{baseline}, "
        f"p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms, {result.errors} errors, "
        f"{optional(result.queries_per_request, '.1f')} queries/req"
    )


def run_wrk(
    options: Options, server: Server, requests: Sequence[Request], workdir: Path, seconds: int, timeout: int
) -> dict[str, Any]:
    script = workdir / "requests.tsv"
    script.write_text("".join(request.line(server.host) + "\n" for request in requests))
    command = [
        "wrk",
        f"-t{options.threads}",
        f"-c{options.connections}",
        f"-d{seconds}s",
        f"--timeout={timeout}s",
        "-s",
        str(WRK_SCRIPT),
        f"http://{server.host}",
        "--",
        str(script),
        str(options.threads),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + timeout + 60)  # noqa: S603
    for line in done.stdout.splitlines():
        if line.startswith("WRK_RESULT "):
            result: dict[str, Any] = json.loads(line.removeprefix("WRK_RESULT "))
            return result
    raise RuntimeError(f"wrk printed no result:\n{done.stdout}\n{done.stderr}")


def check(server: Server, path: Path_) -> None:
    """One request of the path before the load: a wrong answer fails the run, not the figures."""
    request = path.requests[0]
    response = server.fetch(request.method, request.path, request.headers, request.body)
    location = {name.lower(): value for name, value in response.headers}.get("location", "")
    if response.status != path.expect or "/accounts/login/" in location:
        raise RuntimeError(f"{path.title}: {request.method} {request.path} answered {response.status} {location}")


def measure(options: Options, server: Server, path: Path_, workdir: Path, *, quiet: bool = False) -> Result:
    check(server, path)
    if options.warmup:
        run_wrk(options, server, path.warmup or path.requests, workdir, options.warmup, path.timeout)
    before = server.settled(path.timeout) if server.metrics else None
    histogram_before = server.latency_buckets() if server.metrics else None
    seconds = path.duration or options.duration
    profiling = path.key in options.profile and server.name == "portal"
    with RssSampler(server) as rss, Profiler(server, path.key, seconds) if profiling else contextlib.nullcontext():
        cpu_before = server_cpu(server)
        wrk = run_wrk(options, server, path.requests, workdir, seconds, path.timeout)
        cpu_after = server_cpu(server)
    cpu = cpu_seconds(cpu_before, cpu_after)
    statements = queries = hit_rate = reads = portal_p95 = None
    if before is not None:
        # The server's own count of requests is the divisor: it includes those that wrk left in
        # flight when it stopped, whose queries the counters include too.
        after = server.settled(path.timeout)
        delta = {name: after[name] - before[name] for name in after}
        served = max(delta["requests"], 1)
        statements = delta["statements"] / served
        queries = delta["queries"] / max(delta["counted"], 1)
        cache_reads = delta["hits"] + delta["misses"]
        reads = cache_reads / served
        hit_rate = delta["hits"] / cache_reads if cache_reads else None
    if histogram_before is not None:
        p95 = histogram_quantile(0.95, bucket_delta(histogram_before, server.latency_buckets()))
        portal_p95 = None if p95 is None else p95 * 1000
    latency = wrk["latency_us"]
    errors = wrk["errors"]
    seconds = wrk["duration_us"] / 1e6  # what wrk measured, a little over the duration asked for
    result = Result(
        key=path.key,
        title=path.title,
        server=server.name,
        requests=wrk["requests"],
        seconds=round(seconds, 2),
        rps=wrk["requests"] / seconds,
        p50_ms=latency["p50"] / 1000,
        p90_ms=latency["p90"] / 1000,
        p95_ms=latency["p95"] / 1000,
        p99_ms=latency["p99"] / 1000,
        max_ms=latency["max"] / 1000,
        # wrk's "status" errors are the responses of 400 and above; the rest are socket errors.
        errors=sum(errors.values()),
        statuses=wrk["status"],
        laps=wrk["laps"],
        statements_per_request=statements,
        queries_per_request=queries,
        cache_hit_rate=hit_rate,
        cache_reads_per_request=reads,
        peak_rss_mb=max(rss.peaks.values()) / 1024 if rss.peaks else None,
        cpu_ms=cpu * 1000 / wrk["requests"] if wrk["requests"] else None,
        portal_p95_ms=portal_p95,
    )
    if not quiet:
        print(f"  {one_line(result)}", flush=True)
    return result


def cold_queries(server: Server, pages: Sequence[tuple[str, str]], cookies: Sequence[str]) -> dict[str, float]:
    """SQL queries of each member page for members with nothing cached: each page is requested
    once by each of `len(cookies) / len(pages)` fresh members, one at a time."""
    per_page = len(cookies) // len(pages)
    counts = {}
    for index, (key, url) in enumerate(pages):
        before = server.counters()
        for cookie in cookies[index * per_page : (index + 1) * per_page]:
            response = server.fetch("GET", url, {**PROXY, "Cookie": cookie})
            if response.status != 200:
                raise RuntimeError(f"cold {url} answered {response.status}")
        after = server.counters()
        counts[key] = (after["queries"] - before["queries"]) / (after["counted"] - before["counted"])
    return counts
