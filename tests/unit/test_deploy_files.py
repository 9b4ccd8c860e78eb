"""The deployment files a newcomer runs as they are: docker-compose.yml (with the
Prometheus and Grafana configuration it mounts), the Dockerfile and .dockerignore.

No Docker daemon is needed: the files are parsed and checked against the router's own
settings and paths. Where the `docker compose` client exists, its own `config` check runs
too (it does not on the CI machine: only the docker CLI without the compose plugin).
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from router.config import _SETTINGS

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
SETTING_NAMES = {name for s in _SETTINGS for name in s.env}


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_the_stack_has_the_router_its_services_and_monitoring() -> None:
    services = compose()["services"]
    assert set(services) == {"router", "postgres", "redis", "prometheus", "grafana"}
    router = services["router"]
    assert router["build"] == "." and router["command"] == ["serve"]
    assert "3000:3000" in router["ports"]
    for needed in ("postgres", "redis"):
        assert router["depends_on"][needed]["condition"] == "service_healthy"
        assert services[needed]["healthcheck"]["test"]


def test_the_router_environment_names_real_settings_and_reaches_the_services() -> None:
    services = compose()["services"]
    env = services["router"]["environment"]
    unknown = set(env) - SETTING_NAMES
    assert not unknown, f"docker-compose.yml sets variables the router ignores: {unknown}"
    assert env["BILLING_BACKEND"] == "postgres"
    db = urlsplit(env["DATABASE_URL"])
    pg = services["postgres"]["environment"]
    assert (db.hostname, db.port, db.username, db.password, db.path.lstrip("/")) == (
        "postgres", 5432, pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"], pg["POSTGRES_DB"])
    assert urlsplit(env["REDIS_URL"]).hostname == "redis"
    # The admin key is never baked in: compose refuses to start without one.
    assert env["ADMIN_API_KEY"].startswith("${ADMIN_API_KEY:?")


def test_every_mounted_file_exists_and_prometheus_scrapes_the_router() -> None:
    services = compose()["services"]
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which is missing"
    prometheus_yml = next(v.split(":")[0] for v in services["prometheus"]["volumes"]
                          if v.endswith("prometheus.yml:ro"))
    scrape = yaml.safe_load((ROOT / prometheus_yml).read_text())["scrape_configs"]
    router_port = services["router"]["ports"][0].split(":")[1]
    assert any(job.get("metrics_path", "/metrics") == "/metrics"
               and f"router:{router_port}" in job["static_configs"][0]["targets"]
               for job in scrape)


def test_grafana_is_provisioned_with_the_prometheus_source_and_the_dashboard() -> None:
    grafana = compose()["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"] if v.startswith("."))
    provisioning = ROOT / next(k for k, v in mounts.items() if v == "/etc/grafana/provisioning")
    dashboards_dir = next(v for k, v in mounts.items() if "dashboards" in k)
    sources = [s for f in (provisioning / "datasources").glob("*.y*ml")
               for s in yaml.safe_load(f.read_text())["datasources"]]
    assert any(s["type"] == "prometheus" and urlsplit(s["url"]).hostname == "prometheus"
               for s in sources)
    providers = [p for f in (provisioning / "dashboards").glob("*.y*ml")
                 for p in yaml.safe_load(f.read_text())["providers"]]
    assert any(p["options"]["path"].rstrip("/") == dashboards_dir.rstrip("/")
               for p in providers)
    local = ROOT / next(k for k in mounts if "dashboards" in k)
    assert list(local.glob("*.json")), "no dashboard JSON where Grafana looks"


def _ignored(path: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(path.split("/")[0], p)
               or path.startswith(p.rstrip("/") + "/") for p in patterns)


def test_dockerignore_keeps_secrets_and_state_out_and_what_the_image_needs_in() -> None:
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for kept_out in (".git", ".venv", "data", ".env", "aura-router.toml", "tests"):
        assert _ignored(kept_out, patterns), f"{kept_out} would be sent to the build"
    copied = [word for line in (ROOT / "Dockerfile").read_text().splitlines()
              if line.startswith("COPY") for word in line.split()[1:-1]]
    assert copied, "the Dockerfile copies nothing?"
    for source in copied:
        assert (ROOT / source).exists() and not _ignored(source, patterns), source


def test_the_container_says_serve() -> None:
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    assert 'CMD ["serve"]' in lines and 'ENTRYPOINT ["aura-router"]' in lines


@pytest.mark.skipif(not shutil.which("docker") or subprocess.run(
    ["docker", "compose", "version"], capture_output=True).returncode != 0,
    reason="no `docker compose` client here (the parse checks above still ran)")
def test_docker_compose_accepts_the_file() -> None:
    result = subprocess.run(["docker", "compose", "-f", str(COMPOSE), "config", "--quiet"],
                            capture_output=True, text=True,
                            env={**os.environ, "ADMIN_API_KEY": "k" * 32})
    assert result.returncode == 0, result.stderr
