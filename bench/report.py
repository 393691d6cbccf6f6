"""A run's record (`Run`, `Effect`), the targets it is judged by (issue 21), and its output:
Markdown on stdout, JSON and a PNG chart in bench/results/."""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.load import MISSING, Result, optional
from bench.options import RESULTS, Options
from bench.paths import MEMBER_PAGES


@dataclass
class Effect:
    """One path measured with something on and off. For the index, also the page's query alone
    (EXPLAIN ANALYZE, median of several) and the plan PostgreSQL chose for it."""

    effect: str
    key: str
    title: str
    on: list[Result]
    off: list[Result]
    query_on_ms: float | None = None
    query_off_ms: float | None = None
    plan_on: str = ""
    plan_off: str = ""

    @property
    def on_rps(self) -> float:
        return statistics.fmean(result.rps for result in self.on)

    @property
    def off_rps(self) -> float:
        return statistics.fmean(result.rps for result in self.off)

    @property
    def on_cpu_ms(self) -> float | None:
        return mean_cpu_ms(self.on)

    @property
    def off_cpu_ms(self) -> float | None:
        return mean_cpu_ms(self.off)


def mean_cpu_ms(results: list[Result]) -> float | None:
    values = [result.cpu_ms for result in results if result.cpu_ms is not None]
    return statistics.fmean(values) if values else None


@dataclass
class Run:
    options: Options
    started_at: str
    machine: dict[str, Any]
    subject: dict[str, Any]
    baseline: list[Result] = field(default_factory=list)
    paths: list[Result] = field(default_factory=list)
    cold_sql: dict[str, float] = field(default_factory=dict)
    effects: list[Effect] = field(default_factory=list)
    sentry: dict[str, int] = field(default_factory=dict)  # items the Sentry stub received, by type
    targets: list[dict[str, Any]] = field(default_factory=list)
    finished_at: str = ""

    @property
    def baseline_rps(self) -> float:
        return statistics.median(result.rps for result in self.baseline)

    @property
    def baseline_cpu_ms(self) -> float | None:
        values = [result.cpu_ms for result in self.baseline if result.cpu_ms is not None]
        return statistics.median(values) if values else None

    def path(self, key: str) -> Result:
        return next(result for result in self.paths if result.key == key)


# --- Targets (issue 21) ------------------------------------------------------------------------


def targets(run: Run) -> list[dict[str, Any]]:
    """Issue 21's targets: CPU per request over the bare baseline's, measured seconds apart (the
    figure a shared machine moves least), and the effects, each as a ratio of the same run."""
    rows: list[dict[str, Any]] = []

    def target(name: str, measured: str, holds: bool) -> None:
        rows.append({"target": name, "measured": measured, "holds": holds})

    def cpu_at_most(key: str, bound: float) -> None:
        result = run.path(key)
        ratio = result.cpu_ratio
        target(
            f"{result.title}: CPU <= {bound:g}x the baseline's",
            optional(ratio, ".1f") + "x",
            ratio is not None and ratio <= bound,
        )

    warm = run.path("dashboard_warm")
    cpu_at_most("dashboard_warm", 4)
    target("dashboard warm: >= 25% of baseline req/s", f"{warm.ratio or 0:.0%}", (warm.ratio or 0) >= 0.25)
    for key in ("activity_first", "activity_deep", "tokens", "subscription", "profile", "api_activity"):
        cpu_at_most(key, 6)
    cpu_at_most("api_me", 3)
    cpu_at_most("landing", 3)
    for key in ("activity_first", "activity_deep"):
        page = run.path(key)
        target(f"{page.title}: p95 < 20 ms", f"{page.p95_ms:.1f} ms", page.p95_ms < 20)
    for key in ("dashboard_warm", "activity_first"):
        page = run.path(key)
        if page.portal_p95_ms is not None and page.p95_ms:
            gap = abs(page.portal_p95_ms - page.p95_ms) / page.p95_ms
            target(f"{page.title}: the portal's p95 within 10% of wrk's", f"{gap:.0%} apart", gap <= 0.10)
    live = run.path("health_live")
    target("/health/live: >= 85% of baseline req/s", f"{live.ratio or 0:.0%}", (live.ratio or 0) >= 0.85)
    for e in run.effects:
        if e.effect == "cache" and e.key in ("dashboard_warm", "api_me"):
            cpu = (e.off_cpu_ms or 0) / e.on_cpu_ms if e.on_cpu_ms else 0.0
            target(f"cache effect >= 3x ({e.title}): CPU off / on", f"{cpu:.1f}x", cpu >= 3)
        elif e.effect == "monitoring":
            cost = 1 - (e.off_cpu_ms or 0) / e.on_cpu_ms if e.on_cpu_ms else 1.0
            target(f"monitoring costs <= 10% of the CPU ({e.title})", f"{cost:.0%}", cost <= 0.10)
        elif e.effect == "index":
            query = (e.query_off_ms or 0) / max(e.query_on_ms or 0, 0.001)
            page_speedup = e.on_rps / e.off_rps if e.off_rps else float("inf")
            target(
                f"{e.title}: index >= 10x on the page, >= 100x on the query",
                f"page {page_speedup:,.1f}x, query {query:,.0f}x",
                page_speedup >= 10 and query >= 100,
            )
    for key, _ in MEMBER_PAGES:
        page = run.path(key)
        title = page.title.replace(", warm cache", "")
        cold_sql, warm_sql = run.cold_sql[key], page.queries_per_request or 0
        target(
            f"{title}: <= 6 queries cold, <= 2 warm",
            f"{cold_sql:.1f} cold, {warm_sql:.1f} warm",
            cold_sql <= 6.05 and warm_sql <= 2.05,
        )
    return rows


def median_baseline(run: Run) -> Result:
    ranked = sorted(run.baseline, key=lambda result: result.rps)
    return ranked[len(ranked) // 2]


def paths_table(run: Run) -> list[str]:
    """The table of paths, the median baseline first. Its first figure is the CPU ratio, which
    the targets use (issue 21): the server's CPU time per request over the baseline's, measured
    seconds apart. Beside wrk's p95, the portal's own (its latency histogram, as /metrics serves it)."""
    lines = [
        "| path | CPU x baseline | CPU ms/req | req/s | req/s x baseline | p50 ms | p95 ms | portal p95 ms "
        "| p99 ms | errors | Python calls/req | queries/req | SQL/req | cache hits | peak RSS/worker |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for result in [median_baseline(run), *run.paths]:
        if result.key == "baseline":
            result = replace(result, title=f"{result.title} (median)", ratio=1.0, cpu_ratio=1.0)
        rss = MISSING if result.peak_rss_mb is None else f"{result.peak_rss_mb:.0f} MB"
        lines.append(
            f"| {result.title} | {optional(result.cpu_ratio, '.1f')} | {optional(result.cpu_ms, '.2f')} | "
            f"{result.rps:,.0f} | {optional(result.ratio, '.3f')} | {result.p50_ms:.1f} | {result.p95_ms:.1f} | "
            f"{optional(result.portal_p95_ms, '.1f')} | {result.p99_ms:.1f} | {result.errors} | "
            f"{optional(result.python_calls, ',')} | {optional(result.queries_per_request, '.1f')} | "
            f"{optional(result.statements_per_request, '.1f')} | {optional(result.cache_hit_rate, '.0%')} | {rss} |"
        )
    return lines


def markdown(run: Run) -> str:
    options = run.options
    rates = sorted(result.rps for result in run.baseline)
    cpu = sorted(result.cpu_ms for result in run.baseline if result.cpu_ms is not None)
    cpu_range = f", {cpu[0]:.3f} to {cpu[-1]:.3f} ms of CPU a request (median {run.baseline_cpu_ms:.3f})" if cpu else ""
    lines = [
        f"{options.members:,} members, {options.activity:,} activity rows; {options.workers} gunicorn workers; "
        f"wrk, {options.connections} connections, {options.duration} s per path after {options.warmup} s of "
        f"warm-up. Each path's ratios are to the baseline measured for {options.baseline_seconds} s just before "
        f"it: {len(rates)} baselines, {rates[0]:,.0f} to {rates[-1]:,.0f} req/s (median {run.baseline_rps:,.0f})"
        f"{cpu_range}. Python calls: in process, without Sentry (bench/request_cost.py).",
        "",
        *paths_table(run),
    ]
    lines += [
        "",
        f"Effects, one thing off at a time (means of {options.rounds} alternating rounds each side; the index: one "
        "round, and the page's query alone, median of 5 EXPLAIN ANALYZE):",
        "",
        "| effect | path | on req/s | off req/s | on p50 / p99 ms | off p50 / p99 ms | on ÷ off "
        "| on / off CPU ms/req | CPU off ÷ on |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def latency(results: list[Result]) -> str:
        p50 = statistics.fmean(r.p50_ms for r in results)
        p99 = statistics.fmean(r.p99_ms for r in results)
        return f"{p50:,.1f} / {p99:,.1f}"

    for effect in run.effects:
        speed = effect.on_rps / effect.off_rps if effect.off_rps else float("inf")
        on_cpu, off_cpu = effect.on_cpu_ms, effect.off_cpu_ms
        saving = f"{off_cpu / on_cpu:,.2f}x" if on_cpu and off_cpu is not None else MISSING
        lines.append(
            f"| {effect.effect} | {effect.title} | {effect.on_rps:,.0f} | {effect.off_rps:,.1f} | "
            f"{latency(effect.on)} | {latency(effect.off)} | {speed:,.2f}x | "
            f"{optional(on_cpu, '.2f')} / {optional(off_cpu, '.2f')} | {saving} |"
        )
        if effect.query_on_ms is not None and effect.query_off_ms is not None:
            lines.append(
                f"| index | ↳ its query: {effect.plan_on} / {effect.plan_off} | | | {effect.query_on_ms:.3f} ms | "
                f"{effect.query_off_ms:,.3f} ms | {effect.query_off_ms / max(effect.query_on_ms, 0.001):,.0f}x | | |"
            )
    lines += ["", "| target (issue 21) | measured | holds |", "|---|---:|:---:|"]
    for row in run.targets:
        lines.append(f"| {row['target']} | {row['measured']} | {'yes' if row['holds'] else '**no**'} |")
    received = ", ".join(f"{count:,} {kind}" for kind, count in sorted(run.sentry.items())) or "nothing"
    lines += ["", f"Sentry (SENTRY_TRACES_SAMPLE_RATE={options.traces_sample_rate:g}) sent the stub: {received}."]
    return "\n".join(lines)


def chart(run: Run, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = [median_baseline(run), *run.paths]
    labels = [result.title for result in results]
    fig, ax = plt.subplots(figsize=(10, 0.42 * len(results) + 1.6))
    height = 0.27
    for offset, (name, attribute, colour) in enumerate(
        (("p50", "p50_ms", "#4c78a8"), ("p95", "p95_ms", "#f58518"), ("p99", "p99_ms", "#e45756"))
    ):
        values = [max(getattr(result, attribute), 0.01) for result in results]
        ax.barh([i + (offset - 1) * height for i in range(len(results))], values, height, label=name, color=colour)
    ax.set_yticks(range(len(results)), labels)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("latency, ms (log scale)")
    ax.grid(axis="x", which="both", alpha=0.3)
    ax.legend(loc="lower right")
    options = run.options
    ax.set_title(
        f"Latency per path, {options.connections} connections, {options.workers} workers\n"
        f"{options.members:,} members, {options.activity:,} activity rows ({run.started_at[:10]})",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def machine(options: Options) -> dict[str, Any]:
    from django.db import connection
    from django_redis import get_redis_connection

    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    memory = re.search(r"^MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.MULTILINE)
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        (postgres,) = cursor.fetchone() or ("?",)
    redis_info: dict[str, Any] = get_redis_connection("default").info("server")
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)  # noqa: S607 (wrk from PATH)
    import django
    import gunicorn  # type: ignore[import-untyped]

    return {
        "cpus": len(os.sched_getaffinity(0)),
        "cpu_model": model[1].strip() if model else platform.processor(),
        "memory_gb": round(int(memory[1]) / 1024 / 1024, 1) if memory else None,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "django": django.get_version(),
        "gunicorn": gunicorn.__version__,
        "postgresql": postgres,
        "redis": redis_info.get("redis_version"),
        "wrk": wrk.stdout.split("\n", 1)[0].split(" [")[0],
    }


def save(run: Run, markdown_text: str) -> Path:
    RESULTS.mkdir(exist_ok=True)
    stamp = run.started_at.replace(":", "").replace("-", "").replace("+0000", "Z")
    stem = f"{stamp}-m{run.options.members}-a{run.options.activity}"
    data = asdict(run)
    data["baseline_rps"] = run.baseline_rps
    data["baseline_cpu_ms"] = run.baseline_cpu_ms
    data["markdown"] = markdown_text
    data["command"] = " ".join(sys.argv)
    text = json.dumps(data, indent=2, default=str) + "\n"
    (RESULTS / f"{stem}.json").write_text(text)
    (RESULTS / f"{run.options.name}.json").write_text(text)
    chart(run, RESULTS / f"{stem}.png")
    shutil.copyfile(RESULTS / f"{stem}.png", RESULTS / f"{run.options.name}.png")
    return RESULTS / f"{run.options.name}.json"
