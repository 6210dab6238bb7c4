"""Two follow-up and two dispatch replicas on one PostgreSQL store: promtool, fed both replicas' scrapes, finds that
the deployed dashboard and SlaBreachesRising give what one replica gives."""

import asyncio
import re
import shutil
import subprocess
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from schemas.disputes import DISPUTES_TRIAGED
from schemas.workorders import WORKORDERS_EVENTS, DisputeResolved, OrderIssued, OrderStatusChanged
from services.dispatch.routing import DEFAULT_ROUTING, assign, load_routing
from tests.support.conditions import wait_for
from tests.support.fleet import ALERTS, STORE_RECOUNTED, alert_rules, dashboard_expressions, recounted_in
from tests.support.processes import ServiceProcess, produce, start_service
from tests.support.samples import REPORT, WAGE_REPORT, graded, overdue_order

PROMTOOL = shutil.which("promtool")
# At most the alert's threshold of 10, and more than half of it: summed over two replicas the breaches would fire it.
BREACHES = 8
MORE_THAN_THE_THRESHOLD = 11
DISPUTES_DISPATCHED = 3
REPLICAS = ("a", "b")

Scrape = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
async def fleet(embedded_broker, kafka_settings, contract_topics_created, empty_postgres_url, tmp_path):
    """Follow-up and dispatch, two replicas each, in one consumer group per service and on one database."""
    run = uuid.uuid4().hex[:8]
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": embedded_broker.bootstrap_servers,
        "KAFKA_TOPIC_PREFIX": kafka_settings.topic_prefix,
        "DATABASE_URL": empty_postgres_url,
        "FOLLOWUP_GROUP_ID": f"followup-{run}",
        "FOLLOWUP_GAUGE_REFRESH_SECONDS": "0.2",
        "DISPATCH_GROUP_ID": f"dispatch-{run}",
        "DISPATCH_GAUGE_REFRESH_SECONDS": "0.2",
    }
    replicas: dict[str, ServiceProcess] = {}
    try:
        # One replica of each creates the tables before the second starts: two creating them at once would race.
        for replica in REPLICAS:
            logs = tmp_path / replica
            logs.mkdir()
            own = env | {"FOLLOWUP_DATA_DIR": str(logs / "data"), "DISPATCH_DATA_DIR": str(logs / "data")}
            started = {f"{service}-{replica}": start_service(service, own, logs) for service in ("followup", "dispatch")}
            replicas |= started
            await asyncio.gather(*(process.wait_ready() for process in started.values()))
        yield replicas
    finally:
        for name, process in replicas.items():
            assert await asyncio.to_thread(process.stop) == 0, f"{name}:\n{process.log_tail()}"


def resolved_in_time(now: datetime) -> list:
    """An order resolved before its deadline and its dispute resolved: closure and mediation success are not zero."""
    report = REPORT.model_copy(update={"event_id": "evt-kept", "dispute_id": "D-kept"})
    common = {"dispute_id": report.dispute_id, "attempt": 1, "at": now, "work_order_id": "wo-kept", "department": "mediation_room", "role": "lead"}
    return [
        OrderIssued(
            event_id="iss-kept", level=2, urgency="routine", issued_at=now, due_at=now + timedelta(days=10), report=report, **common,
        ),
        OrderStatusChanged(event_id="st-kept", previous_status="in_progress", status="resolved", **common),
        DisputeResolved(
            event_id="res-kept", dispute_id=report.dispute_id, attempt=1, at=now, resolving_department="mediation_room", level=2, report=report,
        ),
    ]


def recounted(metrics_text: str) -> Scrape:
    """Return the store-recounted samples of a /metrics page."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(metrics_text)
        for sample in family.samples
        if sample.name in STORE_RECOUNTED
    }


def total(scrape: Scrape, metric: str, **labels: str) -> float:
    return sum(value for (name, sample_labels), value in scrape.items() if name == metric and labels.items() <= dict(sample_labels).items())


async def settled_scrapes(replicas: dict[str, ServiceProcess], orders_dispatched: int) -> dict[str, Scrape]:
    """Wait until every replica shows the recount of everything fed, and each service's replicas show the same; return the scrapes."""
    scrapes: dict[str, Scrape] = {}

    async def shown() -> bool:
        scrapes.update({name: recounted((await process.get("/metrics"))[1]) for name, process in replicas.items()})
        followups, dispatches = [scrapes[f"followup-{r}"] for r in REPLICAS], [scrapes[f"dispatch-{r}"] for r in REPLICAS]
        return (
            all(total(s, "fengqiao_followup_fired", kind="sla_breached") == BREACHES for s in followups)
            and all(total(s, "fengqiao_followup_orders_issued") == BREACHES + 1 + orders_dispatched for s in followups)
            and all(total(s, "fengqiao_followup_orders_resolved") == 1 for s in followups)
            and all(total(s, "fengqiao_followup_mediation_success_rate") == 1 for s in followups)
            and all(total(s, "fengqiao_dispatch_open_orders") == orders_dispatched for s in dispatches)
            and followups[0] == followups[1]
            and dispatches[0] == dispatches[1]
        )

    try:
        await wait_for(shown, 90, every=0.2)
    except AssertionError as error:
        logs = "\n".join(f"--- {name}:\n{process.log_tail(15)}" for name, process in replicas.items())
        raise AssertionError(f"{error}; last scrapes {scrapes}\n{logs}") from None
    return scrapes


def series(metric: str, labels: tuple[tuple[str, str], ...], instance: str) -> str:
    return metric + "{" + ",".join(f'{k}="{v}"' for k, v in (*labels, ("instance", instance), ("job", "fengqiao"))) + "}"


def steady_series(scrapes: dict[str, Scrape]) -> list[dict]:
    """Each scrape as series that held its values for 20 minutes, labelled with the replica it came from."""
    return [
        {"series": series(metric, labels, instance), "values": f"{value!r}x20"}
        for instance, scrape in scrapes.items()
        for (metric, labels), value in scrape.items()
    ]


# `max by (department) (metric{kind=~"..."})`: the shape of every dashboard query of a recounted gauge.
AGGREGATED = re.compile(r"^\s*(?P<op>sum|max|min|avg|count)\s*(?:by\s*\((?P<by>[^)]*)\))?\s*\(\s*(?P<metric>\w+)\s*(?:\{(?P<matchers>[^}]*)\})?\s*\)\s*$")
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')
COMBINE = {"sum": sum, "max": max, "min": min, "avg": lambda v: sum(v) / len(v), "count": len}


def one_replica_value(expr: str, scrape: Scrape) -> list[dict]:
    """Evaluate an aggregation of one gauge on one replica's scrape: the figure the fleet's query must also give."""
    shape = AGGREGATED.match(expr)
    assert shape, f"teach this test the single-replica value of {expr!r}"
    matchers = MATCHER.findall(shape["matchers"] or "")
    by = [label.strip() for label in (shape["by"] or "").split(",") if label.strip()]
    groups: dict[tuple[tuple[str, str], ...], list[float]] = {}
    for (metric, labels), value in scrape.items():
        if metric == shape["metric"] and all(_matches(dict(labels).get(k, ""), op, v) for k, op, v in matchers):
            groups.setdefault(tuple((k, v) for k, v in labels if k in by), []).append(value)
    return [
        {"labels": "{" + ",".join(f'{k}="{v}"' for k, v in sorted(group)) + "}", "value": COMBINE[shape["op"]](values)}
        for group, values in groups.items()
    ]


def _matches(actual: str, op: str, expected: str) -> bool:
    return {
        "=": actual == expected, "!=": actual != expected,
        "=~": bool(re.fullmatch(expected, actual)), "!~": not re.fullmatch(expected, actual),
    }[op]


def breach_alert_test(breaches: dict[str, float], fires: bool) -> dict:
    """Each follow-up replica's breaches stepping from none to its figure an hour in; SlaBreachesRising fires or not half an hour later."""
    rule = alert_rules()["SlaBreachesRising"]
    inputs = [
        {"series": series("fengqiao_followup_fired", (("kind", "sla_breached"),), instance), "values": f"0x60 {count!r}x60"}
        for instance, count in breaches.items()
    ]
    expected = [{"exp_labels": rule["labels"], "exp_annotations": rule["annotations"]}] if fires else []
    return {"interval": "1m", "input_series": inputs, "alert_rule_test": [{"eval_time": "90m", "alertname": "SlaBreachesRising", "exp_alerts": expected}]}


def dashboard_test(scrapes: dict[str, Scrape], one_replica: Scrape) -> dict:
    """Every dashboard query of a recounted gauge, on the scraped replicas' series, expecting what one replica of each service gives."""
    cases = [
        {"expr": expr, "eval_time": "10m", "exp_samples": one_replica_value(expr, one_replica)}
        for expr in dashboard_expressions()
        if recounted_in(expr)
    ]
    return {"interval": "1m", "input_series": steady_series(scrapes), "promql_expr_test": cases}


def promtool_test(path: Path, tests: list[dict]) -> subprocess.CompletedProcess:
    path.write_text(yaml.safe_dump({"rule_files": [str(ALERTS)], "evaluation_interval": "1m", "tests": tests}, allow_unicode=True), encoding="utf-8")
    return subprocess.run([PROMTOOL, "test", "rules", str(path)], capture_output=True, text=True, timeout=60)


async def test_the_fleet_s_dashboard_and_breach_alert_give_what_one_replica_gives(fleet, embedded_broker, kafka_settings, tmp_path):
    assert PROMTOOL, "promtool is missing: `make test` installs Debian's prometheus package"
    bootstrap, now = embedded_broker.bootstrap_servers, datetime.now(timezone.utc)
    late = [WAGE_REPORT.model_copy(update={"event_id": f"evt-late-{n}", "dispute_id": f"D-late-{n}"}) for n in range(BREACHES)]
    events = [overdue_order(report, f"late-{n}", now) for n, report in enumerate(late)] + resolved_in_time(now)
    await produce(bootstrap, kafka_settings.topic(WORKORDERS_EVENTS), [(e.dispute_id.encode(), e.to_bytes()) for e in events])
    # Dispatch dates orders from the grading: graded now, none of these orders is overdue.
    fresh = [WAGE_REPORT.model_copy(update={"event_id": f"evt-fleet-{n}", "dispute_id": f"D-fleet-{n}"}) for n in range(DISPUTES_DISPATCHED)]
    graded_now = [graded(report, f"tri-fleet-{n}", at=now) for n, report in enumerate(fresh)]
    await produce(bootstrap, kafka_settings.topic(DISPUTES_TRIAGED), [(t.dispute_id.encode(), t.to_bytes()) for t in graded_now])
    table = load_routing(DEFAULT_ROUTING)

    scrapes = await settled_scrapes(fleet, sum(len(assign(t, table)) for t in graded_now))

    # Each replica's scrape under the instance label Prometheus gives it.
    def labelled(names) -> dict[str, Scrape]:
        return {f"127.0.0.1:{fleet[name].http_port}": scrapes[name] for name in names}

    breaches = {instance: total(s, "fengqiao_followup_fired", kind="sla_breached") for instance, s in labelled(f"followup-{r}" for r in REPLICAS).items()}
    first = [name for name in scrapes if name.endswith(f"-{REPLICAS[0]}")]
    one_replica = {key: value for name in first for key, value in scrapes[name].items()}
    tests = [
        breach_alert_test(breaches, fires=False),
        breach_alert_test(dict.fromkeys(breaches, MORE_THAN_THE_THRESHOLD), fires=True),
        # The expected figures hold on one replica of each service (checking this test's evaluation), then on the fleet.
        dashboard_test(labelled(first), one_replica),
        dashboard_test(labelled(scrapes), one_replica),
    ]
    checked = promtool_test(tmp_path / "fleet_test.yml", tests)
    assert checked.returncode == 0, (
        f"with {len(REPLICAS)} replicas the deployed queries no longer give one replica's figures "
        f"(aggregate store-recounted gauges with max, never sum):\n{checked.stdout}{checked.stderr}"
    )
