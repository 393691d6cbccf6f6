"""The container and orchestration files (Dockerfile, deploy/compose.yaml, deploy/k8s/) stay true
to the code they run: every variable they set is one the portal reads, the probes reach views that
answer 200 under the settings the files give, ports and images line up, shutdown waits for
gunicorn's graceful timeout, and no secret is written in them. Nothing is built or started: the
files are read as text and YAML, and the Kubernetes manifests checked against Kubernetes' own
schemas (kubernetes-validate ships them, so no network is needed)."""

from __future__ import annotations

import ast
import copy
import http.server
import json
import os
import posixpath
import re
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from django.urls import resolve

from monitoring import views as monitoring_views

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
sys.path.insert(0, str(DEPLOY))
import healthcheck  # noqa: E402  (deploy/healthcheck.py, the Dockerfile's HEALTHCHECK)

# The oldest Kubernetes the manifests are checked against (every API they use is GA there).
KUBERNETES_VERSION = "1.30"
# Set in the image for Python itself, not for the portal.
INTERPRETER_VARIABLES = {"PATH", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED"}
# What kubelet would put in $(POD_IP) (status.podIP).
POD_IP = "10.1.2.3"
PINNED_TAG = re.compile(r"^v?\d+\.\d+(\.\d+)*(-[a-z0-9.-]+)?$")
SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|DSN|DATABASE_URL|REDIS_URL|EMAIL_URL")


# --- What the code reads -------------------------------------------------------------------------


def _variables_read() -> tuple[set[str], dict[str, int]]:
    """The environment variables portal/settings.py and deploy/gunicorn.conf.py read (found in
    their syntax tree, so a new variable needs no list here), and gunicorn's integer defaults."""
    readers = {"_read", "_int", "os.environ.get", "os.getenv"}
    names: set[str] = set()
    defaults: dict[str, int] = {}
    for path in (ROOT / "portal" / "settings.py", DEPLOY / "gunicorn.conf.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)):
                continue
            function, name = ast.unparse(node.func), node.args[0].value
            if not (isinstance(name, str) and (function in readers or function.startswith("env."))):
                continue
            names.add(name)
            default = node.args[1] if function == "_int" and len(node.args) > 1 else None
            if isinstance(default, ast.Constant) and isinstance(default.value, int):
                defaults[name] = default.value
    return names, defaults


READ, GUNICORN_DEFAULTS = _variables_read()


def test_the_variables_read_are_found():
    assert {"SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL", "SECURE_SSL_REDIRECT", "METRICS_TOKEN"} <= READ
    assert {"GUNICORN_BIND", "GUNICORN_WORKERS", "PROMETHEUS_MULTIPROC_DIR"} <= READ
    assert GUNICORN_DEFAULTS["GUNICORN_GRACEFUL_TIMEOUT"] == 30
    assert GUNICORN_DEFAULTS["GUNICORN_TIMEOUT"] == 30


# --- Reading the files -----------------------------------------------------------------------------


def env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines, as compose's .env and kustomize's `envs` read them."""
    lines = (line.strip() for line in path.read_text().splitlines())
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's stages, each a list of (INSTRUCTION, arguments), continuation lines joined."""
    lines = [line for line in (ROOT / "Dockerfile").read_text().splitlines() if not line.lstrip().startswith("#")]
    stages: list[list[tuple[str, str]]] = []
    for line in re.sub(r"\\\n", " ", "\n".join(lines)).splitlines():
        if not line.strip():
            continue
        instruction, _, arguments = line.strip().partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        stages[-1].append((instruction.upper(), arguments.strip()))
    return stages


def instructions(stage: list[tuple[str, str]], name: str) -> list[str]:
    return [arguments for instruction, arguments in stage if instruction == name]


def image_environment() -> dict[str, str]:
    runtime = dockerfile_stages()[-1]
    return dict(token.split("=", 1) for env in instructions(runtime, "ENV") for token in shlex.split(env))


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def compose_environment(service: str) -> dict[str, str]:
    """A service's environment as compose makes it: ${VAR:-default} gives the default (the
    example file leaves optional values empty), ${VAR:?error} a test value."""

    def interpolate(match: re.Match[str]) -> str:
        name, operator, default = match.groups()
        return default if operator == "-" else f"{name.lower()}-{'x' * 50}"

    environment = compose()["services"][service]["environment"]
    pattern = re.compile(r"\$\{(\w+):([?-])([^}]*)\}")
    return {name: pattern.sub(interpolate, str(value)) for name, value in environment.items()}


BACKGROUND = {"worker", "beat"}


def _documents() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return [yaml.safe_load((K8S / name).read_text()) for name in kustomization["resources"]]


def manifests() -> dict[str, dict[str, Any]]:
    """deploy/k8s/'s resources of the web side (and its migration Job) by kind."""
    return {
        document["kind"]: document
        for document in _documents()
        if document["metadata"]["labels"].get("app.kubernetes.io/component") not in BACKGROUND
    }


def background_manifests() -> dict[tuple[str, str], dict[str, Any]]:
    """The job queue's resources (worker, beat) by kind and component."""
    return {
        (document["kind"], component): document
        for document in _documents()
        if (component := document["metadata"]["labels"].get("app.kubernetes.io/component")) in BACKGROUND
    }


def pod_spec(kind: str) -> dict[str, Any]:
    spec: dict[str, Any] = manifests()[kind]["spec"]["template"]["spec"]
    return spec


def web_container() -> dict[str, Any]:
    (container,) = pod_spec("Deployment")["containers"]
    return container


def all_containers() -> Iterator[dict[str, Any]]:
    specs = [pod_spec(kind) for kind in ("Deployment", "Job")]
    specs += [background_manifests()[("Deployment", component)]["spec"]["template"]["spec"] for component in BACKGROUND]
    for spec in specs:
        yield from spec.get("initContainers", [])
        yield from spec["containers"]


def container_environment(container: dict[str, Any]) -> dict[str, str]:
    """The environment a container starts with: the image's, then envFrom, then env, with
    $(VAR) expanded as kubelet does (from what is defined so far)."""
    sources = {"configMapRef": env_file(K8S / "config.env"), "secretRef": env_file(K8S / "secret.env.example")}
    environment = image_environment()
    for source in container.get("envFrom", []):
        (kind,) = source
        environment.update(sources[kind])
    for variable in container.get("env", []):
        if "value" in variable:
            value = re.sub(r"\$\((\w+)\)", lambda match: environment.get(match[1], match[0]), variable["value"])
        else:
            assert variable["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}, variable
            value = POD_IP
        environment[variable["name"]] = value
    return environment


def bind_port(environment: dict[str, str]) -> int:
    return healthcheck.probe_port(environment["GUNICORN_BIND"])


def effective(environment: dict[str, str], name: str) -> int:
    return int(environment.get(name) or GUNICORN_DEFAULTS[name])


def kustomize_images() -> dict[str, str]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return {image["name"]: image["newTag"] for image in kustomization["images"]}


# --- Every variable set is one the portal reads --------------------------------------------------


def _variables_set() -> dict[str, set[str]]:
    build = dockerfile_stages()[0]
    collectstatic = next(run for run in instructions(build, "RUN") if "collectstatic" in run)
    sources = {
        "Dockerfile ENV": set(image_environment()) - INTERPRETER_VARIABLES,
        "Dockerfile collectstatic": {token.split("=")[0] for token in shlex.split(collectstatic) if "=" in token},
        "compose portal": set(compose()["services"]["portal"]["environment"]),
        "compose migrate": set(compose()["services"]["migrate"]["environment"]),
        "k8s config.env": set(env_file(K8S / "config.env")),
        "k8s secret.env.example": set(env_file(K8S / "secret.env.example")),
    }
    for container in all_containers():
        if "env" in container:
            # POD_IP is kubelet's, only to be expanded into ALLOWED_HOSTS (checked below).
            sources[f"k8s {container['name']}"] = {variable["name"] for variable in container["env"]} - {"POD_IP"}
    return sources


@pytest.mark.parametrize("source", sorted(_variables_set()))
def test_every_variable_set_is_read_by_the_portal(source):
    names = _variables_set()[source]
    assert names, f"{source} sets nothing: is it still read right?"
    unread = sorted(names - READ)
    assert not unread, f"{source} sets {unread}, which neither portal/settings.py nor gunicorn.conf.py reads"


def test_allowed_hosts_lists_the_pod_ip():
    """Kubelet probes and Prometheus's pod scrapes send the pod IP as Host; Django answers 400
    to a host ALLOWED_HOSTS does not list."""
    container = web_container()
    variables = {variable["name"]: variable for variable in container["env"]}
    assert variables["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    names = [variable["name"] for variable in container["env"]]
    assert names.index("POD_IP") < names.index("ALLOWED_HOSTS"), "kubelet expands only variables defined before"
    allowed = container_environment(container)["ALLOWED_HOSTS"].split(",")
    assert POD_IP in allowed
    assert set(env_file(K8S / "config.env")["ALLOWED_HOSTS"].split(",")) <= set(allowed)


# --- Probes and scrapes reach views that answer --------------------------------------------------


def probes() -> dict[str, dict[str, Any]]:
    container = web_container()
    return {kind: container[kind] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}


def test_probe_paths_resolve_to_the_health_views():
    expected = {
        "startupProbe": monitoring_views.live,
        "livenessProbe": monitoring_views.live,
        "readinessProbe": monitoring_views.ready,
    }
    for kind, probe in probes().items():
        assert resolve(probe["httpGet"]["path"]).func is expected[kind], kind
    assert resolve(compose_prometheus()["scrape_configs"][0]["metrics_path"]).func is monitoring_views.metrics


REQUESTS = """
import json, sys
import django
django.setup()
from django.test import Client
client = Client()
requests = json.loads(sys.argv[1])
print(json.dumps([client.get(path, HTTP_HOST=host, **headers).status_code for path, host, headers in requests]))
"""


def statuses(environment: dict[str, str], requests: list[tuple[str, str, dict[str, str]]], tmp_path: Path) -> list[int]:
    """Answers to `requests` (path, Host, headers) from a fresh interpreter whose settings come
    from `environment` only: a database in tmp_path instead of the example's server, local memory
    instead of its Redis."""
    (tmp_path / "prometheus").mkdir()
    environment = {
        **{name: value for name, value in environment.items() if name not in {"REDIS_URL", "DATABASE_URL"}},
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
    }
    environment = {name: value for name, value in environment.items() if name not in INTERPRETER_VARIABLES}
    inherited = {name: value for name, value in os.environ.items() if name not in READ}
    result = subprocess.run(
        [sys.executable, "-c", REQUESTS, json.dumps(requests)],
        cwd=ROOT,
        env={**inherited, **environment, "DJANGO_SETTINGS_MODULE": "portal.settings"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    answers: list[int] = json.loads(result.stdout.strip().splitlines()[-1])
    return answers


def test_kubernetes_probes_and_scrapes_answer_200_with_the_pods_settings(tmp_path):
    """As kubelet and Prometheus ask: plain HTTP to the pod IP and port, DEBUG off."""
    environment = container_environment(web_container())
    assert environment["DEBUG"] == "false"
    host = f"{POD_IP}:{bind_port(environment)}"
    requests: list[tuple[str, str, dict[str, str]]] = [
        (probe["httpGet"]["path"], host, {}) for probe in probes().values()
    ]
    annotations = manifests()["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {environment['METRICS_TOKEN']}"}
    requests.append((annotations["prometheus.io/path"], host, bearer))
    assert statuses(environment, requests, tmp_path) == [200] * len(requests)


def test_compose_health_check_and_scrape_answer_200_with_the_services_settings(tmp_path):
    environment = {**image_environment(), **compose_environment("portal")}
    assert environment["DEBUG"] == "false"
    job = compose_prometheus()["scrape_configs"][0]
    (target,) = job["static_configs"][0]["targets"]
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {environment['METRICS_TOKEN']}"}
    requests = [
        ("/health/live", healthcheck.probe_host(environment["ALLOWED_HOSTS"]), {}),  # the image's HEALTHCHECK
        (job["metrics_path"], target, bearer),
    ]
    assert statuses(environment, requests, tmp_path) == [200, 200]


# --- The container's health check ---------------------------------------------------------------


def test_health_check_names_a_host_that_allowed_hosts_accepts():
    assert healthcheck.probe_host("members.example.org,10.0.0.1") == "members.example.org"
    assert healthcheck.probe_host(" .example.org") == "example.org"
    assert healthcheck.probe_host("*") == "localhost"
    assert healthcheck.probe_host("") == "localhost"


def test_health_check_asks_the_port_gunicorn_binds():
    assert healthcheck.probe_port("0.0.0.0:8000") == 8000
    assert healthcheck.probe_port("unix:/run/portal.sock,[::]:8080") == 8080
    assert healthcheck.probe_port("") == 8000


@pytest.fixture
def stub_server():
    """A server on a free loopback port that answers every GET with `status` and notes the Host."""
    seen: dict[str, Any] = {"status": 200, "hosts": []}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen["hosts"].append((self.path, self.headers["Host"]))
            self.send_response(seen["status"])
            if seen["status"] == 301:
                self.send_header("Location", "https://members.example.org/health/live")
            self.end_headers()

        def log_message(self, format, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    seen["port"] = server.server_address[1]
    yield seen
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(("status", "exit_code"), [(200, 0), (301, 1), (400, 1), (503, 1)])
def test_health_check_passes_on_200_only(stub_server, monkeypatch, status, exit_code):
    stub_server["status"] = status
    monkeypatch.setenv("GUNICORN_BIND", f"0.0.0.0:{stub_server['port']}")
    monkeypatch.setenv("ALLOWED_HOSTS", "members.example.org")
    assert healthcheck.main() == exit_code
    assert stub_server["hosts"] == [("/health/live", "members.example.org")]  # a redirect is not followed


def test_health_check_fails_when_nothing_listens(monkeypatch):
    monkeypatch.setenv("GUNICORN_BIND", "127.0.0.1:1")
    assert healthcheck.main() == 1


# --- Dockerfile ------------------------------------------------------------------------------------


def test_every_stage_starts_from_the_same_pinned_python_slim_image():
    images = {instructions(stage, "FROM")[0].split()[0] for stage in dockerfile_stages()}
    (image,) = images  # the virtualenv is built for the runtime stage's Python
    name, _, tag = image.partition(":")
    assert name == "python"
    assert PINNED_TAG.match(tag) and tag.startswith("3.11.") and "-slim-" in tag, tag


def test_image_runs_gunicorn_as_make_serve_does():
    serve = re.search(r"^serve:.*?\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert serve
    command = next(shlex.split(line) for line in serve[1].splitlines() if "gunicorn" in line)
    (cmd,) = instructions(dockerfile_stages()[-1], "CMD")
    assert json.loads(cmd) == ["gunicorn", *command[1:]]
    assert (ROOT / command[command.index("-c") + 1]).is_file()


def test_image_runs_as_a_fixed_non_root_user():
    runtime = dockerfile_stages()[-1]
    (user,) = instructions(runtime, "USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0
    assert any(f"--uid {uid}" in run for run in instructions(runtime, "RUN")), "the user exists in the image"
    for kind in ("Deployment", "Job"):
        security = pod_spec(kind)["securityContext"]
        assert security["runAsNonRoot"] is True
        assert (security["runAsUser"], security["runAsGroup"]) == (int(uid), int(gid)), kind


def test_image_listens_where_it_says_and_health_checks_liveness():
    runtime = dockerfile_stages()[-1]
    environment = image_environment()
    assert environment["GUNICORN_BIND"].startswith("0.0.0.0:"), "reachable from outside the container"
    assert instructions(runtime, "EXPOSE") == [str(bind_port(environment))]
    assert environment["DEBUG"] == "false"
    assert environment["PYTHONDONTWRITEBYTECODE"] == environment["PYTHONUNBUFFERED"] == "1"
    (check,) = instructions(runtime, "HEALTHCHECK")
    command = json.loads(check.split(" CMD ", 1)[1])
    assert command == ["python", "deploy/healthcheck.py"]
    assert "/health/live" in (ROOT / command[1]).read_text()


def test_static_files_are_collected_at_build_time_with_production_storage():
    build, runtime = dockerfile_stages()[0], dockerfile_stages()[-1]
    (collectstatic,) = (run for run in instructions(build, "RUN") if "collectstatic" in run)
    assert "DEBUG=false" in shlex.split(collectstatic)  # whitenoise's manifest storage, as at run time
    assert instructions(build, "COPY")[0] == "requirements.txt ."  # not requirements-dev.txt
    # The runtime stage takes the whole /app, static files (STATIC_ROOT = var/static) included.
    assert "--from=build /app /app" in instructions(runtime, "COPY")
    assert not any("apt-get install" in run for run in instructions(runtime, "RUN")), "no build tools"


def test_dockerignore_keeps_local_state_and_secrets_out():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    local = {".git", ".venv", "var", "test-artifacts", "node_modules"}
    assert local | {".env", "**/.env", "deploy/k8s/secret.env"} <= ignored
    kept = ["requirements.txt", "manage.py", "deploy", "portal", "static", "templates"]
    assert not ignored & set(kept)


# --- deploy/compose.yaml -----------------------------------------------------------------------------


def compose_prometheus() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.compose.yml").read_text())
    return loaded


def mounts(service: str) -> dict[str, Path]:
    """A service's bind mounts of files in the repository: container path -> file."""
    volumes = compose()["services"][service].get("volumes", [])
    pairs = (volume.split(":")[:2] for volume in volumes if volume.startswith("."))
    return {target: (DEPLOY / source).resolve() for source, target in pairs}


def test_compose_images_are_pinned():
    services = compose()["services"]
    for name, service in services.items():
        if "build" in service:
            assert (ROOT / "deploy" / service["build"]["context"] / "Dockerfile").is_file()
            continue
        tag = service["image"].partition(":")[2]
        assert PINNED_TAG.match(tag), f"{name}: {service['image']} is not pinned to a version"


def test_compose_migrates_before_the_portal_starts():
    services = compose()["services"]
    portal, migrate = services["portal"], services["migrate"]
    assert (migrate["image"], migrate["build"]) == (portal["image"], portal["build"])
    assert migrate["command"] == ["python", "manage.py", "migrate", "--no-input"]
    assert portal["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"]
    assert any(volume.endswith(":/var/lib/postgresql/data") for volume in services["postgres"]["volumes"])
    assert "redis-cli" in services["redis"]["healthcheck"]["test"]


def test_compose_portal_listens_on_its_bind_port_and_waits_for_graceful_shutdown():
    portal = compose()["services"]["portal"]
    environment = {**image_environment(), **compose_environment("portal")}
    (port,) = portal["ports"]
    assert port.endswith(f":{bind_port(environment)}")
    stop_grace = int(portal["stop_grace_period"].removesuffix("s"))
    assert stop_grace > effective(environment, "GUNICORN_GRACEFUL_TIMEOUT")
    assert effective(environment, "GUNICORN_WORKERS") * int(environment["DATABASE_POOL_MAX"]) < 100


def test_compose_sets_no_secret_itself():
    """Secrets come from deploy/.env through ${...}; the example holds none."""
    config = compose()
    for name, service in config["services"].items():
        for variable, value in (service.get("environment") or {}).items():
            if SECRET_NAME.search(variable) and variable != "REDIS_URL":
                assert "${" in str(value), f"{name}: {variable} is written in compose.yaml"
    example = env_file(DEPLOY / "compose.env.example")
    assert not {name: value for name, value in example.items() if value}, "compose.env.example holds values"
    used = set(re.findall(r"\$\{(\w+)", (DEPLOY / "compose.yaml").read_text()))
    assert used == set(example), "compose.env.example lists exactly the variables compose.yaml uses"


def test_compose_prometheus_scrapes_the_portal_with_the_metrics_token():
    example = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    config = compose_prometheus()
    (job,) = config["scrape_configs"]
    # The example scrape job and rules, with only the targets changed.
    expected = copy.deepcopy(example)
    expected["scrape_configs"][0]["static_configs"] = job["static_configs"]
    assert config == expected
    (target,) = job["static_configs"][0]["targets"]
    host, _, port = target.partition(":")
    environment = {**image_environment(), **compose_environment("portal")}
    assert host in compose()["services"] and host in environment["ALLOWED_HOSTS"].split(",")
    assert int(port) == bind_port(environment)

    services = compose()["services"]
    files = mounts("prometheus")
    assert files["/etc/prometheus/prometheus.yml"] == DEPLOY / "prometheus" / "prometheus.compose.yml"
    for rules in config["rule_files"]:
        assert files[posixpath.join("/etc/prometheus", rules)] == DEPLOY / "prometheus" / rules
    (secret,) = services["prometheus"]["secrets"]
    assert secret["target"] == job["authorization"]["credentials_file"]
    assert compose()["secrets"][secret["source"]] == {"environment": "METRICS_TOKEN"}
    assert services["portal"]["environment"]["METRICS_TOKEN"].startswith("${METRICS_TOKEN")


def test_compose_mounts_only_files_that_exist():
    for service in compose()["services"]:
        for target, source in mounts(service).items():
            assert source.exists(), f"{service}: {source} (mounted at {target}) does not exist"


def test_grafana_provisions_our_dashboard_and_the_data_source_it_asks_for():
    files = mounts("grafana")
    provisioning = files["/etc/grafana/provisioning"]
    (datasource,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "portal.yml").read_text())["providers"]
    dashboard_path = posixpath.join(provider["options"]["path"], "portal.json")
    assert files[dashboard_path] == DEPLOY / "grafana" / "portal.json"

    dashboard = json.loads((DEPLOY / "grafana" / "portal.json").read_text())
    variable = next(v for v in dashboard["templating"]["list"] if v["type"] == "datasource")
    # The variable starts on the default data source of its type: the provisioned one.
    assert (datasource["type"], datasource["isDefault"]) == (variable["query"], True)
    uids = {ref["uid"] for ref in _datasource_refs(dashboard)}
    assert uids <= {f"${{{variable['name']}}}", datasource["uid"]}, uids
    url = re.fullmatch(r"http://(\w+):(\d+)", datasource["url"])
    assert url and url[1] in compose()["services"] and url[2] == "9090"


def _datasource_refs(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if isinstance(node.get("datasource"), dict):
            yield node["datasource"]
        for value in node.values():
            yield from _datasource_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _datasource_refs(value)


@pytest.mark.prometheus
def test_compose_prometheus_config_loads(tmp_path):
    config = compose_prometheus()
    token = tmp_path / "token"
    token.write_text("token\n")
    config["scrape_configs"][0]["authorization"]["credentials_file"] = str(token)
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    (tmp_path / "alerts.yml").write_text((DEPLOY / "prometheus" / "alerts.yml").read_text())
    result = subprocess.run(
        ["promtool", "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- deploy/k8s/ -------------------------------------------------------------------------------------


def test_kustomization_lists_every_manifest_and_its_generators_files_exist():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    manifests_here = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == manifests_here
    (config,) = kustomization["configMapGenerator"]
    (secret,) = kustomization["secretGenerator"]
    assert config["envs"] == ["config.env"] and (K8S / "config.env").is_file()
    # secret.env holds the real values: made from the example, never committed.
    assert secret["envs"] == ["secret.env"] and (K8S / "secret.env.example").is_file()
    assert "deploy/k8s/secret.env" in (ROOT / ".gitignore").read_text().splitlines()
    for container in all_containers():
        references = {next(iter(source.values()))["name"] for source in container["envFrom"]}
        assert references == {config["name"], secret["name"]}, container["name"]


@pytest.mark.parametrize("kind", ["Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Job"])
def test_manifest_matches_the_kubernetes_schema(kind):
    # strict: an unknown or misspelt field is an error, not silently ignored by the cluster.
    try:
        kubernetes_validate.validate(manifests()[kind], KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        where = "/".join(str(part) for part in error.absolute_path)
        pytest.fail(f"{kind} at {where or 'the top'}: {error.message}", pytrace=False)


def test_secret_example_holds_placeholders_only_and_config_holds_no_secret():
    secrets = env_file(K8S / "secret.env.example")
    assert {"SECRET_KEY", "DATABASE_URL", "METRICS_TOKEN"} <= set(secrets)
    for name, value in secrets.items():
        assert not value or "change-me" in value, f"{name} in secret.env.example is not a placeholder"
    config = env_file(K8S / "config.env")
    assert not {name for name in config if SECRET_NAME.search(name)}, "secrets belong in the Secret"


def test_migration_job_runs_the_deployments_image():
    images = {container["image"] for container in all_containers()}
    assert len(images) == 1, images
    (image,) = images
    assert PINNED_TAG.match(kustomize_images()[image]), "the release is pinned in kustomization.yaml"
    job = manifests()["Job"]
    (migrate,) = job["spec"]["template"]["spec"]["containers"]
    assert migrate["command"] == ["python", "manage.py", "migrate", "--no-input"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    (wait,) = pod_spec("Deployment")["initContainers"]
    assert "migrate --check" in " ".join(wait["command"]), "new pods wait for the migrations"


def test_service_and_probes_reach_the_port_gunicorn_binds():
    container = web_container()
    port = bind_port(container_environment(container))
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert list(named.values()) == [port]
    (service_port,) = manifests()["Service"]["spec"]["ports"]
    assert named.get(service_port["targetPort"], service_port["targetPort"]) == port
    for kind, probe in probes().items():
        assert named.get(probe["httpGet"]["port"], probe["httpGet"]["port"]) == port, kind
    annotations = manifests()["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == port


def test_selectors_match_the_pods():
    labels = manifests()["Deployment"]["spec"]["template"]["metadata"]["labels"]
    selectors = {
        "Deployment": manifests()["Deployment"]["spec"]["selector"]["matchLabels"],
        "Service": manifests()["Service"]["spec"]["selector"],
        "PodDisruptionBudget": manifests()["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"],
    }
    for kind, selector in selectors.items():
        assert selector.items() <= labels.items(), kind
    job_labels = manifests()["Job"]["spec"]["template"]["metadata"]["labels"]
    assert not selectors["Service"].items() <= job_labels.items(), "the Service must not route to the Job"


def test_several_replicas_autoscaled_on_cpu():
    deployment, hpa = manifests()["Deployment"], manifests()["HorizontalPodAutoscaler"]
    assert deployment["spec"]["replicas"] >= 2
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "portal"}
    assert deployment["metadata"]["name"] == "portal"
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert manifests()["PodDisruptionBudget"]["spec"]["maxUnavailable"] < hpa["spec"]["minReplicas"]


def _cpus(quantity: str) -> float:
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def test_gunicorn_workers_follow_the_cpu_limit():
    """gunicorn's default counts the CPUs the process may run on: in a pod, the node's."""
    container = web_container()
    environment = container_environment(container)
    cpus = _cpus(container["resources"]["limits"]["cpu"])
    assert int(environment["GUNICORN_WORKERS"]) == 2 * cpus + 1
    hpa = manifests()["HorizontalPodAutoscaler"]["spec"]
    connections = hpa["maxReplicas"] * int(environment["GUNICORN_WORKERS"]) * int(environment["DATABASE_POOL_MAX"])
    assert connections < 100, "pods x workers x DATABASE_POOL_MAX outgrows PostgreSQL's default max_connections"
    # A worker's threads share its pool: more threads than connections would wait for one.
    assert int(environment["GUNICORN_THREADS"]) <= int(environment["DATABASE_POOL_MAX"])


def test_shutdown_waits_for_gunicorn_and_liveness_for_its_timeout():
    spec, container = pod_spec("Deployment"), web_container()
    environment = container_environment(container)
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    graceful = effective(environment, "GUNICORN_GRACEFUL_TIMEOUT")
    assert spec["terminationGracePeriodSeconds"] > int(command[1]) + graceful
    liveness = container["livenessProbe"]
    assert liveness["periodSeconds"] * liveness["failureThreshold"] > effective(environment, "GUNICORN_TIMEOUT")
    readiness = container["readinessProbe"]
    assert readiness["timeoutSeconds"] > 3, "longer than the database check's own timeout"


def test_containers_are_locked_down_with_writable_tmp_and_metrics_dirs():
    volumes = {volume["name"]: volume for kind in ("Deployment", "Job") for volume in pod_spec(kind)["volumes"]}
    for component in BACKGROUND:
        spec = background_manifests()[("Deployment", component)]["spec"]["template"]["spec"]
        volumes.update({f"{component}-{volume['name']}": volume for volume in spec["volumes"]})
        for container in spec["containers"]:
            for mount in container["volumeMounts"]:
                assert mount["name"] in {volume["name"] for volume in spec["volumes"]}
                assert "emptyDir" in volumes[f"{component}-{mount['name']}"]
    for container in all_containers():
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True, container["name"]
        assert security["allowPrivilegeEscalation"] is False, container["name"]
        assert security["capabilities"]["drop"] == ["ALL"], container["name"]
        assert "limits" in container["resources"] and "requests" in container["resources"], container["name"]
        writable = {mount["mountPath"] for mount in container["volumeMounts"] if "emptyDir" in volumes[mount["name"]]}
        assert "/tmp" in writable, container["name"]  # noqa: S108 (the container's /tmp)
    # gunicorn empties and fills PROMETHEUS_MULTIPROC_DIR: on its own emptyDir.
    web = web_container()
    multiproc = container_environment(web)["PROMETHEUS_MULTIPROC_DIR"]
    (metrics,) = (mount for mount in web["volumeMounts"] if mount["mountPath"] == multiproc)
    assert "emptyDir" in volumes[metrics["name"]]


# --- The job queue: workers and one beat ---------------------------------------------------------


def _longest_task_limit() -> int:
    """The longest hard time limit of the portal's tasks (a task without one is not allowed)."""
    from portal.celery import app

    app.loader.import_default_modules()
    ours = [task for name, task in app.tasks.items() if name.split(".")[0] in {"members", "subscriptions", "portal"}]
    assert ours, "no task of ours is registered"
    limits = [task.time_limit for task in ours]
    assert None not in limits, [task.name for task in ours if task.time_limit is None]
    return max(limits)


@pytest.mark.parametrize(
    "key", [("Deployment", "worker"), ("HorizontalPodAutoscaler", "worker"), ("Deployment", "beat")]
)
def test_background_manifest_matches_the_kubernetes_schema(key):
    try:
        kubernetes_validate.validate(background_manifests()[key], KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        where = "/".join(str(part) for part in error.absolute_path)
        pytest.fail(f"{key} at {where or 'the top'}: {error.message}", pytrace=False)


def test_workers_and_beat_run_celery_on_the_portal_app_as_pid_1():
    for component in BACKGROUND:
        spec = background_manifests()[("Deployment", component)]["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        # exec form, no shell: celery itself gets SIGTERM and shuts down warm.
        assert container["command"][:4] == ["celery", "-A", "portal", component], component
        assert container["image"] == web_container()["image"]
        labels = background_manifests()[("Deployment", component)]["spec"]["template"]["metadata"]["labels"]
        assert not manifests()["Service"]["spec"]["selector"].items() <= labels.items(), "no web traffic to it"


def test_exactly_one_beat_never_two_during_a_rollout():
    beat = background_manifests()[("Deployment", "beat")]
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}
    assert ("HorizontalPodAutoscaler", "beat") not in background_manifests()


def test_workers_autoscale_on_cpu():
    worker, hpa = (
        background_manifests()[("Deployment", "worker")],
        background_manifests()[("HorizontalPodAutoscaler", "worker")],
    )
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": worker["metadata"]["name"],
    }
    assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"


def test_a_worker_is_given_longer_than_its_longest_task_to_shut_down():
    longest = _longest_task_limit()
    worker = background_manifests()[("Deployment", "worker")]["spec"]["template"]["spec"]
    assert worker["terminationGracePeriodSeconds"] > longest
    services = compose()["services"]
    assert _seconds(services["worker"]["stop_grace_period"]) > longest


def _seconds(duration: str) -> int:
    match = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", duration)
    assert match and duration, duration
    return int(match[1] or 0) * 60 + int(match[2] or 0)


def test_compose_runs_a_worker_and_one_beat_after_the_migrations():
    services = compose()["services"]
    for name in ("worker", "beat"):
        service = services[name]
        assert service["command"][:4] == ["celery", "-A", "portal", name], name
        assert service["environment"] == services["portal"]["environment"], name
        assert service["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}, name
        assert service["depends_on"]["redis"] == {"condition": "service_healthy"}, name
    assert "deploy" not in services["beat"] or services["beat"]["deploy"].get("replicas", 1) == 1
