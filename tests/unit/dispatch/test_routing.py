"""Table-driven routing: every rule of the routing table, deadlines, and one order per department and attempt."""

import asyncio
import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from schemas.disputes import DisputeTriaged
from services.dispatch.app import routing_holder
from services.dispatch.calendar import CHINA, WorkingCalendar
from services.dispatch.disclosure import DEFAULT_DISCLOSURE, load_disclosure
from services.dispatch.metrics import DispatchMetrics
from services.dispatch.routing import (
    DEFAULT_ROUTING,
    RoutingError,
    assign,
    load_routing,
    parse_routing,
    route,
    work_order_id,
)
from services.runtime.reload import watch_file
from tests.support.conditions import wait_for
from tests.support.samples import TRIAGED

TABLE = load_routing(DEFAULT_ROUTING)
POLICY = load_disclosure(DEFAULT_DISCLOSURE)
TIERS = {1: "on_site", 2: "mediation_room", 3: "joint_consultation"}


def graded(level=1, urgency="routine", category="family_marriage", flags=(), vulnerable=()):
    """A triaged dispute of the given grade, category, flags and one party's vulnerabilities."""
    party = {"role": "complainant", "kind": "person", "name": "王某", "vulnerable": list(vulnerable)}
    raw = TRIAGED.model_dump(mode="json") | {"level": level, "tier": TIERS[level], "urgency": urgency, "flags": list(flags)}
    raw["report"] |= {"parties": [party], "category": category}
    return DisputeTriaged.model_validate_json(json.dumps(raw))


# (case, graded dispute, expected [(department, role)])
CASES = [
    ("level 1 on site", graded(1), [("community_police", "lead")]),
    ("level 1 no category support", graded(1, category="labor_wage"), [("community_police", "lead")]),
    ("level 2 family", graded(2), [("mediation_room", "lead"), ("women_federation", "support")]),
    ("level 2 neighbour", graded(2, category="neighbor"), [("mediation_room", "lead"), ("justice_office", "support")]),
    ("level 2 debt", graded(2, category="contract_debt"), [("mediation_room", "lead"), ("justice_office", "support")]),
    ("level 2 homestead", graded(2, category="land_homestead"), [("mediation_room", "lead"), ("natural_resources", "support")]),
    ("level 2 land transfer", graded(2, category="land_transfer"), [("mediation_room", "lead"), ("natural_resources", "support")]),
    ("level 2 wages", graded(2, category="labor_wage"), [("mediation_room", "lead"), ("labor_arbitration", "support")]),
    ("level 2 restructuring", graded(2, category="enterprise_restructuring"), [("mediation_room", "lead"), ("labor_arbitration", "support")]),
    ("level 2 property", graded(2, category="property_management"), [("mediation_room", "lead"), ("housing_construction", "support")]),
    ("level 2 demolition", graded(2, category="demolition_resettlement"), [("mediation_room", "lead"), ("housing_construction", "support")]),
    ("level 2 construction", graded(2, category="construction"), [("mediation_room", "lead"), ("housing_construction", "support")]),
    ("level 2 traffic", graded(2, category="traffic_accident"), [("mediation_room", "lead"), ("traffic_police", "support")]),
    ("level 2 medical", graded(2, category="medical"), [("mediation_room", "lead"), ("health", "support")]),
    ("level 2 environment", graded(2, category="environment"), [("mediation_room", "lead"), ("ecology_environment", "support")]),
    ("level 2 consumer", graded(2, category="consumer_quality"), [("mediation_room", "lead"), ("market_supervision", "support")]),
    ("level 2 campus", graded(2, category="education_campus"), [("mediation_room", "lead"), ("education", "support")]),
    ("level 2 other", graded(2, category="other"), [("mediation_room", "lead")]),
    ("level 3 wages", graded(3, "urgent", "labor_wage"), [("joint_consultation", "lead"), ("labor_arbitration", "support"), ("governance_centre", "support")]),
    ("self-harm at level 1", graded(1, flags=["self_harm_threat"]), [("community_police", "lead"), ("psychological_counseling", "support")]),
    ("petition at level 3", graded(3, "urgent", "other", ["petition_history"]), [("joint_consultation", "lead"), ("governance_centre", "support"), ("petition_office", "support")]),
    ("a minor at level 1", graded(1, vulnerable=["minor"]), [("community_police", "lead"), ("women_federation", "support")]),
    ("an elderly party", graded(1, vulnerable=["elderly"]), [("community_police", "lead"), ("civil_affairs", "support")]),
    ("women's federation once", graded(2, vulnerable=["minor"]), [("mediation_room", "lead"), ("women_federation", "support")]),
    ("immediate at level 1: one police order", graded(1, "immediate", flags=["violence_threat"]), [("community_police", "lead")]),
    ("immediate at level 3: police first", graded(3, "immediate", "neighbor", ["violence_threat"]), [("community_police", "lead"), ("joint_consultation", "lead"), ("justice_office", "support"), ("governance_centre", "support")]),
]


@pytest.mark.parametrize("case, dispute, expected", CASES, ids=[c[0] for c in CASES])
def test_routing_table(case, dispute, expected):
    assert [(a.department, a.role) for a in assign(dispute, TABLE)] == expected


ISSUED = datetime(2026, 3, 2, 10, 0, tzinfo=CHINA)  # a Monday


# (case, graded dispute, department, due)
DEADLINES = [
    ("level 1: 3 working days", graded(1), "community_police", ISSUED + timedelta(days=3)),
    ("level 2: 7 working days", graded(2), "mediation_room", ISSUED + timedelta(days=9)),
    ("level 3: 15 working days", graded(3, "urgent"), "joint_consultation", ISSUED + timedelta(days=21)),
    ("support shares the level's deadline", graded(2), "women_federation", ISSUED + timedelta(days=9)),
    ("first response: 1 hour on the clock", graded(3, "immediate", flags=["weapon_involved"]), "community_police", ISSUED + timedelta(hours=1)),
    ("tier lead of an immediate dispute keeps its working days", graded(3, "immediate"), "joint_consultation", ISSUED + timedelta(days=21)),
]


@pytest.mark.parametrize("case, dispute, department, due", DEADLINES, ids=[d[0] for d in DEADLINES])
def test_deadlines(case, dispute, department, due):
    orders = {o.department: o for o in route(dispute, 1, ISSUED, TABLE, WorkingCalendar(), POLICY)}
    assert orders[department].due_at == due
    assert orders[department].first_response == (due - ISSUED == timedelta(hours=1))


def test_orders_are_deterministic_per_dispute_department_and_attempt():
    first = route(graded(2), 1, ISSUED, TABLE, WorkingCalendar(), POLICY)
    again = route(graded(2), 1, ISSUED + timedelta(minutes=5), TABLE, WorkingCalendar(), POLICY)
    later = route(graded(2), 2, ISSUED, TABLE, WorkingCalendar(), POLICY)
    assert [o.work_order_id for o in first] == [o.work_order_id for o in again]
    assert not {o.work_order_id for o in first} & {o.work_order_id for o in later}
    assert first[0].work_order_id == work_order_id(TRIAGED.dispute_id, "mediation_room", 1)
    assert first[0].instructions == TABLE.instructions.lead and first[1].instructions == TABLE.instructions.support


def test_broken_routing_tables_are_rejected_naming_the_key():
    text = DEFAULT_ROUTING.read_text(encoding="utf-8")
    with pytest.raises(RoutingError, match="lead_by_tier.on_site: Input should be"):
        parse_routing(text.replace("on_site: community_police", "on_site: fire_brigade"))
    with pytest.raises(RoutingError, match="deadline_working_days"):
        parse_routing(text.replace("  3: 15\n", ""))
    with pytest.raises(RoutingError, match="unexpected_key: Extra inputs"):
        parse_routing(text + "\nunexpected_key: 1\n")


async def test_a_broken_routing_file_at_runtime_is_rejected_and_the_old_table_keeps_serving(tmp_path, caplog):
    registry = CollectorRegistry()
    metrics = DispatchMetrics(registry)
    path = tmp_path / "routing.yaml"
    text = DEFAULT_ROUTING.read_text(encoding="utf-8")
    path.write_text(text, encoding="utf-8")
    holder = routing_holder(text, metrics)
    watcher = asyncio.create_task(watch_file(holder, path, 0.05))
    try:
        # Broken (an unknown department) and dangerous (a YAML tag that would build a Python object).
        path.write_text(text.replace('version: "2026.11.1"', 'version: "2026.11.2"').replace("mediation_room", "no_such_department", 1), encoding="utf-8")
        await wait_for(lambda: _rejections(registry, 1), 5)
        path.write_text(text.replace('version: "2026.11.1"', 'version: "2026.11.3"') + "\nexploit: !!python/object/apply:os.system ['touch pwned']\n", encoding="utf-8")
        await wait_for(lambda: _rejections(registry, 2), 5)
    finally:
        watcher.cancel()
    assert holder.current.version == "2026.11.1"
    assert registry.get_sample_value("fengqiao_dispatch_routing_active", {"version": "2026.11.1"}) == 1
    assert "rejected routing from file, keeping 2026.11.1" in caplog.text
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


async def _rejections(registry, count):
    return registry.get_sample_value("fengqiao_dispatch_routing_reloads_total", {"result": "rejected", "origin": "file"}) == count
