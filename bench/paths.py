"""What the bench measures: the requests wrk sends for each path, and the portal's paths."""

from __future__ import annotations

from dataclasses import dataclass

from bench.data import Subject, log_in_pool
from bench.options import METRICS_TOKEN, PROXY


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: str = ""

    def line(self, host: str) -> str:
        fields = [self.method, self.path, self.body, f"Host: {host}", *(f"{k}: {v}" for k, v in self.headers.items())]
        if any("\t" in part or "\n" in part for part in fields):
            raise ValueError(f"a tab or newline in a request for {self.path}")
        return "\t".join(fields)


@dataclass(frozen=True)
class Path_:
    """A path to measure: the requests wrk sends in turn (one, or a pool of members), what they
    should answer, and the requests of the warm-up (the same unless given)."""

    key: str
    title: str
    requests: tuple[Request, ...]
    expect: int = 200
    warmup: tuple[Request, ...] = ()
    timeout: int = 10
    duration: int = 0  # seconds of load, if not the run's


def cold_dashboard(subject: Subject, pool_size: int, warm: Request, skip: int = 0) -> Path_:
    """The dashboard with nothing cached: each request from another member of a pool of fresh
    sessions (bench members after the first `skip`), larger than the requests a run makes (`laps`
    in the results says if it was not). Its warm-up is the warm dashboard's, so that no member of
    the pool is read before."""
    pool = log_in_pool([subject.member_id, subject.sparse.member_id], pool_size, skip)
    return Path_(
        "dashboard_cold",
        "dashboard, cold cache (a new member each request)",
        tuple(Request("GET", "/dashboard/", {**PROXY, "Cookie": member}) for member in pool),
        warmup=(warm,),
    )


def activity_page(key: str, title: str, cookie: str, cursor: str = "") -> Path_:
    url = f"/activity/?before={cursor}" if cursor else "/activity/"
    # A page without its index may take seconds: wrk waits for it rather than count a timeout.
    return Path_(key, title, (Request("GET", url, {**PROXY, "Cookie": cookie}),), timeout=60)


def member_paths(subject: Subject, cookie: str, admin: str) -> list[Path_]:
    page = {**PROXY, "Cookie": cookie}
    api = {**PROXY, "Authorization": f"Bearer {subject.api_token}"}
    log = subject.log
    return [
        Path_("landing", "landing page (anonymous)", (Request("GET", "/", PROXY),)),
        Path_("dashboard_warm", "dashboard, warm cache", (Request("GET", "/dashboard/", page),)),
        activity_page("activity_first", "activity page one", cookie),
        activity_page("activity_deep", f"activity page {log.deep_offset:,} rows deep", cookie, log.deep_cursor),
        Path_("tokens", "tokens page", (Request("GET", "/tokens/", page),)),
        Path_("profile", "profile page", (Request("GET", "/profile/", page),)),
        Path_("subscription", "subscription page", (Request("GET", "/subscription/", page),)),
        Path_("api_me", "GET /api/v1/me", (Request("GET", "/api/v1/me", api),)),
        Path_("api_activity", "GET /api/v1/activity", (Request("GET", "/api/v1/activity", api),)),
        Path_("health_live", "/health/live", (Request("GET", "/health/live", {}),)),
        Path_("health_ready", "/health/ready", (Request("GET", "/health/ready", {}),)),
        Path_("metrics", "/metrics", (Request("GET", "/metrics", {"Authorization": f"Bearer {METRICS_TOKEN}"}),)),
        Path_("admin_index", "admin index (staff dashboard)", (Request("GET", "/admin/", {**PROXY, "Cookie": admin}),)),
        Path_(
            "admin_activity",
            "admin activity list",
            (Request("GET", "/admin/members/activitylog/", {**PROXY, "Cookie": admin}),),
        ),
    ]


# Member pages whose query counts the targets bound, and their URLs for the cold counts.
MEMBER_PAGES = (
    ("dashboard_warm", "/dashboard/"),
    ("activity_first", "/activity/"),
    ("tokens", "/tokens/"),
    ("profile", "/profile/"),
    ("subscription", "/subscription/"),
)
