"""Gauges recounted from the shared store are exported alike by every replica: each deployed query takes their max, never their sum."""

import pytest
from prometheus_client import CollectorRegistry

from services.dispatch.metrics import DispatchMetrics
from services.followup.metrics import FLEET_NOTE, FollowupMetrics
from tests.support.fleet import STORE_RECOUNTED, aggregations_of, alert_rules, dashboard_expressions, recounted_in

# (expression, metric, the aggregation around each place it is read)
AGGREGATIONS = [
    ("max by (department) (fengqiao_dispatch_open_orders)", "fengqiao_dispatch_open_orders", ["max"]),
    ("sum by (department) (fengqiao_dispatch_open_orders)", "fengqiao_dispatch_open_orders", ["sum"]),
    ("max(fengqiao_dispatch_open_orders) by (department)", "fengqiao_dispatch_open_orders", ["max"]),
    ("fengqiao_followup_open_overdue_orders", "fengqiao_followup_open_overdue_orders", [None]),
    ('max(increase(fengqiao_followup_fired{kind="sla_breached"}[1h])) > 10', "fengqiao_followup_fired", ["max"]),
    ('sum(increase(fengqiao_followup_fired{kind="sla_breached"}[1h])) > 10', "fengqiao_followup_fired", ["sum"]),
    ('max by (kind) (fengqiao_followup_fired{kind=~"sla_(warning|breached)"})', "fengqiao_followup_fired", ["max"]),
    ("rate(fengqiao_followup_fired[5m])", "fengqiao_followup_fired", [None]),
    (
        "max(fengqiao_followup_orders_resolved) / sum(fengqiao_followup_orders_issued)",
        "fengqiao_followup_orders_issued",
        ["sum"],
    ),
    ("sum(fengqiao_followup_fired_total)", "fengqiao_followup_fired", []),
]


@pytest.mark.parametrize("expr, metric, expected", AGGREGATIONS, ids=[row[0] for row in AGGREGATIONS])
def test_the_aggregation_around_a_metric_is_found(expr, metric, expected):
    assert aggregations_of(expr, metric) == expected


def deployed_queries() -> list[tuple[str, str]]:
    return [("dashboard", e) for e in dashboard_expressions()] + [(name, r["expr"]) for name, r in alert_rules().items()]


def test_every_deployed_query_of_a_store_recounted_gauge_takes_its_max():
    reading = [(where, expr, metric) for where, expr in deployed_queries() for metric in recounted_in(expr)]
    assert {metric for _, _, metric in reading} >= {"fengqiao_dispatch_open_orders", "fengqiao_followup_fired"}
    summed = [(where, expr) for where, expr, metric in reading if set(aggregations_of(expr, metric)) != {"max"}]
    assert not summed, f"aggregate store-recounted gauges with max, never sum (each replica exports the same figure): {summed}"


def test_the_store_recounted_gauges_are_the_ones_whose_help_says_so():
    registry = CollectorRegistry()
    DispatchMetrics(registry), FollowupMetrics(registry)
    saying = {family.name for family in registry.collect() if family.documentation.endswith(FLEET_NOTE)}
    assert saying == set(STORE_RECOUNTED)
