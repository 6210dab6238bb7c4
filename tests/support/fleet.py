"""The gauges every replica exports alike (recounted from the shared store), and the deployed queries that read them."""

import json
import re
from pathlib import Path

import yaml

from services.dispatch.metrics import STORE_RECOUNTED as DISPATCH_RECOUNTED
from services.followup.metrics import STORE_RECOUNTED as FOLLOWUP_RECOUNTED

DEPLOY = Path(__file__).parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "fengqiao.json"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
STORE_RECOUNTED = DISPATCH_RECOUNTED + FOLLOWUP_RECOUNTED
AGGREGATORS = ("sum", "max", "min", "avg", "count", "group", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values")


def dashboard_expressions() -> list[str]:
    """Return every query of the deployed dashboard."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def alert_rules() -> dict[str, dict]:
    """Return the deployed alert rules by name."""
    groups = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}


def recounted_in(expr: str) -> list[str]:
    """Return the store-recounted metrics an expression reads."""
    return [name for name in STORE_RECOUNTED if _occurrences(expr, name)]


def aggregations_of(expr: str, metric: str) -> list[str | None]:
    """Return, for each place the expression reads `metric`, the aggregation operator around it (None when there is none)."""
    masked = _mask_strings(expr)
    return [_enclosing_aggregation(masked, start) for start in _occurrences(masked, metric)]


def _occurrences(expr: str, metric: str) -> list[int]:
    # A whole name only: fengqiao_followup_fired must not match inside a longer name.
    return [m.start() for m in re.finditer(rf"(?<![A-Za-z0-9_:]){re.escape(metric)}(?![A-Za-z0-9_:])", expr)]


def _mask_strings(expr: str) -> str:
    # Label values may hold parentheses (a regex): blank them out, keeping every offset.
    return re.sub(r'"(?:[^"\\]|\\.)*"', lambda m: '"' + "_" * (len(m.group()) - 2) + '"', expr)


def _enclosing_aggregation(expr: str, position: int) -> str | None:
    # Walk out through the parentheses around `position`; the first one an aggregation operator opens answers.
    depth = 0
    for index in range(position - 1, -1, -1):
        if expr[index] == ")":
            depth += 1
        elif expr[index] == "(" and depth:
            depth -= 1
        elif expr[index] == "(":
            operator = _operator_before(expr[:index])
            if operator in AGGREGATORS:
                return operator
    return None


def _operator_before(text: str) -> str | None:
    # `max by (department) (`: skip a grouping clause to reach the operator it belongs to.
    text = re.sub(r"\b(by|without)\s*\([^()]*\)\s*$", "", text.rstrip()).rstrip()
    found = re.search(r"([A-Za-z_]+)$", text)
    return found.group(1) if found else None
