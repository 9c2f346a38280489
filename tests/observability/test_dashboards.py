"""The dashboards as code: the committed JSON is what the generator writes, it parses
into the SDK's types and back unchanged, and every panel queries Prometheus."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models.dashboard import Dashboard

from usdcarb.observability.dashboards import dashboards

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "deploy" / "monitoring" / "grafana" / "dashboards"
pytestmark = pytest.mark.unit


def test_the_committed_dashboards_are_what_the_generator_writes() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_dashboards.py"),
                             "--check"], capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert {p.stem for p in OUT.glob("*.json")} == set(dashboards()) == {
        "overview", "backtests", "market-data", "gateway", "notifications"}


@pytest.mark.parametrize("path", sorted(OUT.glob("*.json")), ids=lambda p: p.stem)
def test_each_dashboard_parses_into_the_sdk_types_and_back_unchanged(path: Path) -> None:
    register_default_plugins()  # panel and query types decode to their own classes
    data = json.loads(path.read_text())
    board = Dashboard.from_json(data)
    assert json.loads(JSONEncoder(sort_keys=True).encode(board)) == data
    assert board.uid and board.uid.startswith("usdcarb-") and board.title
    ids = [p.id_val for p in board.panels or []]
    assert ids == list(range(1, len(ids) + 1))
    panels = [p for p in data["panels"] if p["type"] != "row"]
    assert panels and all(p["type"] in {"timeseries", "stat"} for p in panels)
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"] and all(t["expr"] and t["refId"] for t in panel["targets"])
    [variable] = data["templating"]["list"]
    assert variable["type"] == "datasource" and variable["query"] == "prometheus"
