"""The chart's alerts, evaluated by Prometheus's own rule engine: `promtool test rules`
runs prometheusrule_test.yaml (the ecosystem's format for rule unit tests) against the
PrometheusRule the chart renders. Each alert fires when it should and stays silent in
the cases next to it.

By hand, after `make install`:
    .venv/bin/python -m pytest tests/unit/chart/test_chart_alert_rules.py
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.tooling import find_tool

RULE_TESTS = Path(__file__).with_name("prometheusrule_test.yaml")
# The name prometheusrule_test.yaml's `rule_files` gives the rendered rules.
RULES_FILE = "prometheusrule.rules.yaml"
ENABLED = "metrics.prometheusRule.enabled=true"


@pytest.fixture(scope="module")
def promtool() -> str:
    return find_tool("promtool")


def rule_groups(manifests: Any) -> dict[str, Any]:
    """A Prometheus rules file: the PrometheusRule's spec is one already."""
    return {"groups": manifests.one("PrometheusRule")["spec"]["groups"]}


def alerts_of(groups: dict[str, Any]) -> set[str]:
    return {rule["alert"] for group in groups["groups"] for rule in group["rules"]}


def promtool_run(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args], capture_output=True, text=True, check=False, timeout=120
    )


@pytest.fixture(scope="module")
def alert_cases() -> list[dict[str, Any]]:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    return [case for test in tests for case in test.get("alert_rule_test", [])]


def test_every_alert_of_the_chart_is_tested_firing_and_silent(
    render: Callable[..., Any], alert_cases: list[dict[str, Any]]
) -> None:
    firing = {case["alertname"] for case in alert_cases if case.get("exp_alerts")}
    silent = {case["alertname"] for case in alert_cases if not case.get("exp_alerts")}
    alerts = alerts_of(rule_groups(render(ENABLED)))

    assert firing == alerts
    assert silent == alerts


def test_each_alert_fires_when_it_should_and_stays_silent_next_to_it(
    render: Callable[..., Any], promtool: str, tmp_path: Path
) -> None:
    (tmp_path / RULES_FILE).write_text(yaml.safe_dump(rule_groups(render(ENABLED))))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)

    result = promtool_run(promtool, "test", "rules", str(tmp_path / RULE_TESTS.name))

    assert result.returncode == 0, f"promtool test rules failed:\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize("failure_policy", ["Fail", "Ignore"])
def test_the_rendered_rules_are_valid_prometheus_rules(
    render: Callable[..., Any], promtool: str, tmp_path: Path, failure_policy: str
) -> None:
    manifests = render(ENABLED, f"webhook.failurePolicy={failure_policy}")
    (tmp_path / RULES_FILE).write_text(yaml.safe_dump(rule_groups(manifests)))

    result = promtool_run(promtool, "check", "rules", str(tmp_path / RULES_FILE))

    assert result.returncode == 0, f"promtool check rules failed:\n{result.stdout}{result.stderr}"
