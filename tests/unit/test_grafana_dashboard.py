"""The Grafana dashboard in the repository (deploy/grafana/dashboards/aura-router.json) queries
only series the router exports, and shows every metric it exports: renaming a metric
without the dashboard (or the other way round) fails here, not on an operator's screen.
Its panels read the data source provisioned next to it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

import yaml

from router.metrics import exported_names

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "aura-router.json"
DATASOURCES = ROOT / "deploy" / "grafana" / "provisioning" / "datasources"
# A metric name in PromQL: `aura_...`, not inside a label matcher's quotes.
METRIC = re.compile(r"\b(aura_[a-z0-9_]+)\b")
SUFFIXES = ("_total", "_bucket", "_sum", "_count")


def _panels() -> list[dict[str, Any]]:
    return json.loads(DASHBOARD.read_text())["panels"]


def _queries() -> Iterator[str]:
    for panel in _panels():
        for target in panel["targets"]:
            yield target["expr"]


def _family(series: str) -> str:
    for suffix in SUFFIXES:
        if series.endswith(suffix):
            return series[:-len(suffix)]
    return series


def test_every_series_the_dashboard_queries_is_one_the_router_exports() -> None:
    exported = exported_names()
    used = {name for expr in _queries() for name in METRIC.findall(expr)}
    assert used, "the dashboard queries nothing"
    assert used <= exported, f"not exported by the router: {sorted(used - exported)}"


def test_every_metric_the_router_exports_has_a_panel() -> None:
    used = {_family(name) for expr in _queries() for name in METRIC.findall(expr)}
    missing = {_family(name) for name in exported_names()} - used
    assert not missing, f"exported but on no panel: {sorted(missing)}"


def test_the_panels_read_the_provisioned_prometheus_source() -> None:
    sources = [s for f in DATASOURCES.glob("*.y*ml")
               for s in yaml.safe_load(f.read_text())["datasources"]]
    uids = {s["uid"] for s in sources if s["type"] == "prometheus"}
    for panel in _panels():
        assert panel["datasource"]["uid"] in uids, panel["title"]
        assert all(t["datasource"]["uid"] in uids for t in panel["targets"]), panel["title"]
    ids = [panel["id"] for panel in _panels()]
    assert len(ids) == len(set(ids)), "panel ids are unique"
