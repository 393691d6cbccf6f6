"""Traffic for the drills: a few threads on loopback doing what members, scripts and an
orchestrator do, every request recorded with when it was sent, how long it took and how it ended.

- Readers: logged-in members, each with a session and an API token, going round the dashboard,
  the profile page, `GET /api/v1/me` and `GET /api/v1/activity`, with a short pause between.
- A login thread: a fresh visitor logs in every few seconds (the login page, the POST, then the
  dashboard with the new session), slower than the per-address login limit. Its visitors are
  kept, so a drill can check that sessions created during an outage still work afterwards.
- Two probes, as an orchestrator would send them: `/health/live` and `/health/ready`, every
  half second each, straight to the instance (no TLS proxy header).

Bounded: the threads stop when told to, or once `max_requests` requests have been sent.
"""

from __future__ import annotations

import http.client
import json
import math
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tools.servers import keep_cookies

PROXY_HEADERS = {"X-Forwarded-Proto": "https"}  # what the TLS proxy in front of the portal adds

# Request kinds, by the group a drill's expectation speaks of.
PAGES = ("dashboard", "profile", "login_page", "session_check")
API = ("api_me", "api_activity", "api_patch_me")
MEMBER_FACING = (*PAGES, "login", *API)
PROBES = ("live", "ready")
# The orchestrator's probe timeouts (deploy/k8s/deployment.yaml): a probe not answered within its
# timeout has failed, and the probe is given up, as the kubelet gives it up.
LIVE_TIMEOUT_S = 3.0
READY_TIMEOUT_S = 5.0
# The user agent of the writer thread's requests, as the activity log records it.
WRITER_AGENT = "portal-drill-writer"


# --- Clock ------------------------------------------------------------------------------------


class Clock:
    """Seconds since the drill started, and the wall-clock time of that start (to place
    gunicorn's access log lines, which carry wall-clock seconds)."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.wall_started = time.time()

    def now(self) -> float:
        return time.monotonic() - self.started

    def sleep_until(self, at: float, stop: threading.Event | None = None) -> None:
        delay = at - self.now()
        if delay > 0:
            if stop is None:
                time.sleep(delay)
            else:
                stop.wait(delay)


# --- HTTP -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # lower-case names; Set-Cookie is consumed by the client
    body: bytes

    @property
    def location(self) -> str:
        return self.headers.get("location", "")

    def json(self) -> Any:
        return json.loads(self.body)


class NoAnswer(Exception):
    """The request got no HTTP answer: refused, reset, closed early or timed out."""


class Client:
    """One visitor: its own cookies, the CSRF token sent back on POSTs, no redirects followed.
    A new connection per request, as gunicorn's sync workers close each one anyway."""

    def __init__(self, host: str, port: int, *, timeout: float = 60.0, proxied: bool = True) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.proxied = proxied
        self.cookies: dict[str, str] = {}

    def csrf_token(self) -> str:
        # `csrftoken`, or `__Host-csrftoken` once the cookie is prefixed.
        return next((value for name, value in self.cookies.items() if name.endswith("csrftoken")), "")

    def request(
        self,
        method: str,
        path: str,
        *,
        form: dict[str, str] | Sequence[tuple[str, str]] | None = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        sent = dict(PROXY_HEADERS) if self.proxied else {}
        sent["User-Agent"] = "portal-drill"
        if form is not None:
            body = urllib.parse.urlencode(form).encode()
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        if method in {"POST", "PATCH", "DELETE"}:
            # Django checks a secure request's Origin against its own host.
            sent["Origin"] = f"https://{self.host}:{self.port}"
            if token := self.csrf_token():
                sent["X-CSRFToken"] = token
        sent.update(headers or {})
        connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as error:
            raise NoAnswer(_describe(error)) from error
        finally:
            connection.close()
        keep_cookies(self.cookies, response.headers.get_all("Set-Cookie") or [])
        return Answer(response.status, {name.lower(): value for name, value in response.getheaders()}, data)

    def log_in(self, email: str, password: str) -> Answer:
        """The login page (for the CSRF cookie), then the form; 302 to the dashboard when it worked."""
        self.request("GET", "/accounts/login/")
        return self.request("POST", "/accounts/login/", form={"login": email, "password": password})


def _describe(error: BaseException) -> str:
    if isinstance(error, socket.timeout | TimeoutError):
        return "timeout"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, ConnectionResetError):
        return "connection reset"
    if isinstance(error, http.client.RemoteDisconnected):
        return "closed without answer"
    if isinstance(error, http.client.IncompleteRead):
        return "incomplete answer"
    return type(error).__name__


# --- Samples ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    kind: str
    sent: float  # seconds since the drill started
    latency: float  # seconds until the whole answer was read, or until the error
    status: int | None  # None: no HTTP answer, `error` says why
    ok: bool  # the answer a working portal gives (readiness: any 200 or 503 is an answer)
    error: str = ""  # "logged out", "unexpected 403", "timeout", ...
    detail: str = ""  # readiness: "ok", "degraded" or "down", and each check's state

    @property
    def done(self) -> float:
        return self.sent + self.latency

    @property
    def server_error(self) -> bool:
        return self.status is not None and self.status >= 500


Check = Callable[[Answer], tuple[bool, str, str]]  # (ok, error, detail)


def expect(*statuses: int, location: str | None = None) -> Check:
    """The answer is one of `statuses` (and, for a redirect, goes to `location`). A member page
    that redirects to the login page means the member was logged out."""

    def check(answer: Answer) -> tuple[bool, str, str]:
        if answer.status in statuses and (location is None or answer.location == location):
            return True, "", ""
        if answer.status == 302 and answer.location.startswith("/accounts/login/"):
            return False, "logged out", ""
        if answer.status >= 500:
            return False, f"{answer.status}", _snippet(answer)
        return False, f"unexpected {answer.status}", answer.location or _snippet(answer)

    return check


def readiness(answer: Answer) -> tuple[bool, str, str]:
    try:
        report = answer.json()
        detail = f"{report['status']} " + " ".join(
            f"{name}={state}" for name, state in sorted(report["checks"].items())
        )
    except (ValueError, KeyError, TypeError):
        return False, f"unexpected {answer.status}", _snippet(answer)
    return answer.status in (200, 503), "" if answer.status in (200, 503) else f"unexpected {answer.status}", detail


def _snippet(answer: Answer) -> str:
    return re.sub(r"\s+", " ", answer.body[:200].decode(errors="replace")).strip()


class Recorder:
    """Every sample of a drill, and the cap on how many requests it may send."""

    def __init__(self, clock: Clock, *, max_requests: int) -> None:
        self.clock = clock
        self.max_requests = max_requests
        self.samples: list[Sample] = []
        self._lock = threading.Lock()

    @property
    def full(self) -> bool:
        return len(self.samples) >= self.max_requests

    def call(
        self,
        kind: str,
        client: Client,
        method: str,
        path: str,
        check: Check,
        **kwargs: Any,
    ) -> tuple[Sample, Answer | None]:
        sent = self.clock.now()
        try:
            answer = client.request(method, path, **kwargs)
        except NoAnswer as error:
            sample = Sample(kind, sent, self.clock.now() - sent, None, False, str(error))
            self.add(sample)
            return sample, None
        ok, error_text, detail = check(answer)
        sample = Sample(kind, sent, self.clock.now() - sent, answer.status, ok, error_text, detail)
        self.add(sample)
        return sample, answer

    def add(self, sample: Sample) -> None:
        with self._lock:
            self.samples.append(sample)


# --- Traffic ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    email: str
    password: str
    token: str = ""  # a read token (readers), or read and write (the writer)


@dataclass
class Traffic:
    """The readers, the login thread and the probes, running until `stop()`."""

    host: str
    port: int
    recorder: Recorder
    readers: Sequence[Account]
    login_accounts: Sequence[Account]
    think: float = 0.05  # seconds a reader pauses between requests
    login_every: float = 4.0  # 15 a minute: under the login limit of 30 a minute per address
    probe_every: float = 0.5
    # Optional: one script changing the writer's display name through the API, one write after
    # another, each value new; `writes` keeps each value with how its request ended.
    writer: Account | None = None
    writes: list[tuple[str, Sample]] = field(default_factory=list)
    reader_clients: list[Client] = field(default_factory=list)
    login_clients: list[tuple[float, Client]] = field(default_factory=list)  # (logged in at, visitor)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def client(self, *, proxied: bool = True, timeout: float = 60.0) -> Client:
        return Client(self.host, self.port, proxied=proxied, timeout=timeout)

    def start(self) -> None:
        for account in self.readers:
            visitor = self.client()
            answer = visitor.log_in(account.email, account.password)
            if (answer.status, answer.location) != (302, "/dashboard/"):
                raise RuntimeError(f"could not log {account.email} in: {answer.status} {_snippet(answer)}")
            self.reader_clients.append(visitor)
        targets: list[tuple[str, Callable[[], None]]] = [
            *(
                (f"reader-{index}", self._reader(visitor, account))
                for index, (visitor, account) in enumerate(zip(self.reader_clients, self.readers, strict=True))
            ),
            ("logins", self._logins),
            *([("writer", self._write)] if self.writer else []),
            ("probe-live", self._probe("live", "/health/live", expect(200), LIVE_TIMEOUT_S)),
            ("probe-ready", self._probe("ready", "/health/ready", readiness, READY_TIMEOUT_S)),
        ]
        for name, target in targets:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=90)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set() or self.recorder.full

    def _reader(self, visitor: Client, account: Account) -> Callable[[], None]:
        api = {"Authorization": f"Bearer {account.token}"}
        rounds: list[tuple[str, str, dict[str, str]]] = [
            ("dashboard", "/dashboard/", {}),
            ("api_me", "/api/v1/me", api),
            ("profile", "/profile/", {}),
            ("api_activity", "/api/v1/activity", api),
        ]

        def run() -> None:
            index = 0
            while not self.stopping:
                kind, path, headers = rounds[index % len(rounds)]
                index += 1
                self.recorder.call(kind, visitor, "GET", path, expect(200), headers=headers)
                self._stop.wait(self.think)

        return run

    def _write(self) -> None:
        if self.writer is None:
            return
        visitor = self.client()
        headers = {
            "Authorization": f"Bearer {self.writer.token}",
            "Content-Type": "application/json",
            "User-Agent": WRITER_AGENT,
        }
        index = 0
        while not self.stopping:
            value = f"write-{index}"
            index += 1
            body = json.dumps({"display_name": value}).encode()
            sample, _ = self.recorder.call(
                "api_patch_me", visitor, "PATCH", "/api/v1/me", expect(200), body=body, headers=headers
            )
            self.writes.append((value, sample))
            self._stop.wait(self.think * 4)

    def _logins(self) -> None:
        index = 0
        clock = self.recorder.clock
        next_at = clock.now()
        while not self.stopping:
            account = self.login_accounts[index % len(self.login_accounts)]
            index += 1
            visitor = self.client()
            self.recorder.call("login_page", visitor, "GET", "/accounts/login/", expect(200))
            sample, _ = self.recorder.call(
                "login",
                visitor,
                "POST",
                "/accounts/login/",
                expect(302, location="/dashboard/"),
                form={"login": account.email, "password": account.password},
            )
            if sample.ok:
                self.recorder.call("dashboard", visitor, "GET", "/dashboard/", expect(200))
                self.login_clients.append((sample.sent, visitor))
            next_at += self.login_every
            clock.sleep_until(next_at, self._stop)

    def _probe(self, kind: str, path: str, check: Check, timeout: float) -> Callable[[], None]:
        def run() -> None:
            probe = self.client(proxied=False, timeout=timeout)
            clock = self.recorder.clock
            next_at = clock.now()
            while not self.stopping:
                self.recorder.call(kind, probe, "GET", path, check)
                next_at = max(next_at + self.probe_every, clock.now())
                clock.sleep_until(next_at, self._stop)

        return run

    def sessions_still_valid(self) -> dict[str, int]:
        """Each visitor's session, without a new login: still lets them see their dashboard?"""
        counts = {"readers": 0, "readers_valid": 0, "logged_in_during": 0, "logged_in_during_valid": 0}
        for visitor in self.reader_clients:
            counts["readers"] += 1
            counts["readers_valid"] += _session_valid(visitor, self.recorder)
        for _, visitor in self.login_clients:
            counts["logged_in_during"] += 1
            counts["logged_in_during_valid"] += _session_valid(visitor, self.recorder)
        return counts


def _session_valid(visitor: Client, recorder: Recorder) -> bool:
    sample, _ = recorder.call("session_check", visitor, "GET", "/dashboard/", expect(200))
    return sample.ok


# --- Figures ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Phase:
    name: str
    start: float
    end: float

    def holds(self, sample: Sample) -> bool:
        return self.start <= sample.sent < self.end


def percentile(values: Sequence[float], share: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


def figures(samples: Iterable[Sample]) -> dict[str, Any]:
    """Counts and latency of a set of samples."""
    chosen = list(samples)
    latencies = [sample.latency for sample in chosen]
    errors: dict[str, int] = {}
    for sample in chosen:
        if not sample.ok:
            errors[sample.error] = errors.get(sample.error, 0) + 1
    return {
        "requests": len(chosen),
        "ok": sum(sample.ok for sample in chosen),
        "5xx": sum(sample.server_error for sample in chosen),
        "no_answer": sum(sample.status is None for sample in chosen),
        "errors": dict(sorted(errors.items())),
        "p50_ms": round(percentile(latencies, 0.50) * 1000),
        "p99_ms": round(percentile(latencies, 0.99) * 1000),
        "max_ms": round(max(latencies, default=0.0) * 1000),
    }


def by_phase(samples: Sequence[Sample], phases: Sequence[Phase]) -> dict[str, Any]:
    """Per phase: member-facing requests (pages, login, API) and each group, and the probes'
    answers (readiness by state)."""
    result: dict[str, Any] = {}
    for phase in phases:
        inside = [sample for sample in samples if phase.holds(sample)]
        ready = [sample for sample in inside if sample.kind == "ready"]
        live = [sample for sample in inside if sample.kind == "live"]
        states: dict[str, int] = {}
        for sample in ready:
            key = f"{sample.status} {sample.detail.split(' ')[0]}" if sample.status else f"no answer ({sample.error})"
            states[key] = states.get(key, 0) + 1
        result[phase.name] = {
            "seconds": round(phase.end - phase.start, 1),
            "member_facing": figures(sample for sample in inside if sample.kind in MEMBER_FACING),
            "pages": figures(sample for sample in inside if sample.kind in PAGES),
            "login": figures(sample for sample in inside if sample.kind == "login"),
            "api": figures(sample for sample in inside if sample.kind in API),
            "ready": {"answers": dict(sorted(states.items())), **_latency(ready)},
            "live": {
                "answers": dict(sorted(_answers(live).items())),
                **_latency(live),
                "over_3s": sum(sample.latency > 3.0 or sample.status is None for sample in live),
            },
        }
    return result


def _answers(samples: Iterable[Sample]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for sample in samples:
        key = str(sample.status) if sample.status else f"no answer ({sample.error})"
        counts[key] = counts.get(key, 0) + 1
    return counts


def _latency(samples: Sequence[Sample]) -> dict[str, int]:
    latencies = [sample.latency for sample in samples]
    return {"p99_ms": round(percentile(latencies, 0.99) * 1000), "max_ms": round(max(latencies, default=0) * 1000)}


def recovery(samples: Sequence[Sample], restored_at: float, good: Callable[[Sample], bool]) -> float | None:
    """Seconds from `restored_at` until the first request from which every later one (by the
    time it was sent) was `good`: 0 when none failed after the restore. None when nothing good
    was sent after the restore at all."""
    after = sorted((sample for sample in samples if sample.sent >= restored_at), key=lambda sample: sample.sent)
    last_bad = max((index for index, sample in enumerate(after) if not good(sample)), default=-1)
    if last_bad == len(after) - 1:
        return None
    return round(max(0.0, after[last_bad + 1].sent - restored_at) if last_bad >= 0 else 0.0, 2)


def failed_samples(samples: Sequence[Sample], limit: int = 200) -> list[dict[str, Any]]:
    """The requests that did not get the answer a working portal gives, for the JSON."""
    return [
        {
            "kind": sample.kind,
            "sent": round(sample.sent, 2),
            "latency_ms": round(sample.latency * 1000),
            "status": sample.status,
            "error": sample.error,
            "detail": sample.detail[:200],
        }
        for sample in samples
        if not sample.ok
    ][:limit]


def per_second(samples: Sequence[Sample], kinds: Sequence[str] = MEMBER_FACING) -> list[dict[str, int]]:
    """A timeline, one entry per second of the drill: requests sent, how many failed, the
    slowest (ms). For reading what happened when, next to the phases."""
    seconds: dict[int, dict[str, int]] = {}
    for sample in samples:
        if sample.kind not in kinds:
            continue
        entry = seconds.setdefault(int(sample.sent), {"t": int(sample.sent), "requests": 0, "failed": 0, "max_ms": 0})
        entry["requests"] += 1
        entry["failed"] += not sample.ok
        entry["max_ms"] = max(entry["max_ms"], round(sample.latency * 1000))
    return [seconds[second] for second in sorted(seconds)]
