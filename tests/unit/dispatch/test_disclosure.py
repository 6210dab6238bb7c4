"""The disclosure policy: masking, what each recipient receives, refused files, and the auditor that checks the topics."""

import json
from datetime import timedelta

import pytest
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from schemas.common import Party
from schemas.disputes import DisputeTriaged
from schemas.followups import FollowupDue
from schemas.workorders import DEPARTMENTS, WorkOrderIssued
from services.cli import app as cli
from services.dispatch.app import disclosure_holder
from services.dispatch.calendar import WorkingCalendar
from services.dispatch.disclosure import (
    DEFAULT_DISCLOSURE,
    DisclosureError,
    disclose,
    disclose_to,
    disclosure_id,
    disclosure_text,
    load_disclosure,
    mask_id_number,
    mask_name,
    mask_phone,
    parse_disclosure,
)
from services.dispatch.cases import cases_for, take_report
from services.dispatch.lifecycle import Dispute, Effects, dispatch, with_known_parties
from services.dispatch.metrics import DispatchMetrics
from services.dispatch.routing import DEFAULT_ROUTING, load_routing, parse_pinned, pinned_text, routing_text
from services.runtime.kafka import encode_event
from services.simulator.population import id_check_character
from tests.support.disclosure import audit_topics
from tests.support.samples import TRIAGED, at

POLICY = load_disclosure(DEFAULT_DISCLOSURE)
TABLE = load_routing(DEFAULT_ROUTING)
TEXT = DEFAULT_DISCLOSURE.read_text(encoding="utf-8")
# The departments the defaults give ID numbers to: the police and the judicial ones.
ID_READERS = {"community_police", "traffic_police", "court", "justice_office"}

PERSON = Party(role="complainant", kind="person", name="李四", id_number="33068119900101001X", phone="13900000001", age=34, vulnerable=["pregnant"])
COMPANY = Party(role="respondent", kind="organization", name="宏达建筑劳务有限公司", id_number="91330681MA2BCDEF1X", phone="0575-87001234")


@pytest.mark.parametrize(("name", "masked"), [
    ("李四", "李**"),
    ("王某", "王**"),
    ("张", "张**"),
    ("欧阳修", "欧阳**"),
    ("欧阳", "欧**"),  # two characters: a surname and a given name, not a compound surname alone
    ("诸葛亮亮", "诸葛**"),
    (" 赵云", "赵**"),
    ("John Smith", "J**"),
    ("李**", "李**"),  # masked already: unchanged
])
def test_names_keep_the_surname(name, masked):
    assert mask_name(name) == masked


@pytest.mark.parametrize(("phone", "masked"), [
    ("13900000001", "139****0001"),
    ("+86 139-0000-0001", "139****0001"),
    ("8613900000001", "139****0001"),
    ("0575-87001234", "057****1234"),
    ("87001234", "****"),  # too short to show seven digits of
    ("110", "****"),
    ("139****0001", "139****0001"),
    ("****", "****"),
])
def test_phones_keep_the_first_three_and_last_four_digits(phone, masked):
    assert mask_phone(phone) == masked


@pytest.mark.parametrize(("id_number", "masked"), [
    ("330100199001011234", "3301**********1234"),
    ("33068119900101001X", "3306**********001X"),
    ("330681900101001", "3306*******1001"),  # a 15-digit first-generation card
    ("91330681MA2BCDEF1X", "9133**********EF1X"),
    ("AB1234567", "********"),  # too short to show eight characters of
    ("1234", "****"),
    ("3301**********1234", "3301**********1234"),
])
def test_id_numbers_keep_the_first_four_and_last_four(id_number, masked):
    assert mask_id_number(id_number) == masked


def test_masked_values_are_valid_parties_and_full_ones_still_are():
    masked = PERSON.model_copy(update={"name": mask_name(PERSON.name), "phone": mask_phone(PERSON.phone), "id_number": mask_id_number(PERSON.id_number)})
    for party in (PERSON, COMPANY, masked, masked.model_copy(update={"phone": "****", "id_number": "********"})):
        assert Party.model_validate_json(party.model_dump_json()) == party


@pytest.mark.parametrize(("value", "field"), [
    ("13*0001", "phone"),
    ("139***0001", "phone"),
    ("3301*1234*", "id_number"),
    ("*", "id_number"),
])
def test_other_starred_values_are_still_refused(value, field):
    with pytest.raises(ValueError):
        Party.model_validate({"role": "other", "kind": "person", "name": "李**", field: value})


SHOWN = ("name", "phone", "id_number", "age", "vulnerable")


# (recipient, role): name, phone, id_number, age, vulnerable
@pytest.mark.parametrize(("department", "role", "expected"), [
    ("mediation_room", "lead", ("full", "full", "withheld", "full", "full")),
    ("joint_consultation", "lead", ("full", "full", "withheld", "full", "full")),
    ("governance_centre", "support", ("masked", "masked", "withheld", "withheld", "full")),
    ("labor_arbitration", "support", ("masked", "masked", "withheld", "withheld", "full")),
    ("women_federation", "support", ("masked", "masked", "withheld", "withheld", "full")),
    ("community_police", "lead", ("full", "full", "full", "full", "full")),
    ("community_police", "support", ("full", "masked", "full", "withheld", "full")),
    ("traffic_police", "support", ("full", "masked", "full", "withheld", "full")),
    ("court", "lead", ("full", "full", "full", "full", "full")),
    ("justice_office", "support", ("full", "masked", "full", "withheld", "full")),
    ("legal_aid", "support", ("masked", "masked", "withheld", "withheld", "full")),
])
def test_each_department_and_role_receives_what_the_policy_says(department, role, expected):
    view = POLICY.view(department, role)
    assert tuple(getattr(view, f) for f in SHOWN) == expected


def test_revisit_team_and_audit_stream_receive_names_and_phones_but_no_id_numbers():
    for view in (POLICY.revisit, POLICY.events):
        assert tuple(getattr(view, f) for f in SHOWN) == ("full", "full", "withheld", "full", "full")


@pytest.mark.parametrize("department", DEPARTMENTS)
@pytest.mark.parametrize("role", ["lead", "support"])
def test_only_the_police_and_the_judicial_departments_receive_id_numbers(department, role):
    assert POLICY.view(department, role).id_number == ("full" if department in ID_READERS else "withheld")
    assert POLICY.view(department, role).phone == ("full" if role == "lead" else "masked")


# (recipient, role) → the person and the company as that recipient receives them
@pytest.mark.parametrize(("department", "role", "person", "company"), [
    ("mediation_room", "lead",
     {"name": "李四", "phone": "13900000001", "id_number": None, "age": 34, "vulnerable": ["pregnant"]},
     {"name": "宏达建筑劳务有限公司", "phone": "0575-87001234", "id_number": None}),
    ("labor_arbitration", "support",
     {"name": "李**", "phone": "139****0001", "id_number": None, "age": None, "vulnerable": ["pregnant"]},
     {"name": "宏达建筑劳务有限公司", "phone": "057****1234", "id_number": None}),  # an organisation's name is not masked
    ("traffic_police", "support",
     {"name": "李四", "phone": "139****0001", "id_number": "33068119900101001X", "age": None, "vulnerable": ["pregnant"]},
     {"name": "宏达建筑劳务有限公司", "phone": "057****1234", "id_number": "91330681MA2BCDEF1X"}),
])
def test_disclose_to_gives_each_recipient_its_view_of_every_party(department, role, person, company):
    seen_person, seen_company = disclose_to(POLICY, department, role, [PERSON, COMPANY])
    assert {k: getattr(seen_person, k) for k in person} == person
    assert {k: getattr(seen_company, k) for k in company} == company
    assert (seen_person.role, seen_person.kind, seen_company.kind) == ("complainant", "person", "organization")


def test_disclosing_twice_changes_nothing_and_full_views_return_the_very_parties():
    support = POLICY.view("health", "support")
    once = disclose(support, [PERSON, COMPANY])
    assert disclose(support, once) == once
    assert disclose(POLICY.view("court", "lead"), [PERSON])[0] is PERSON


def _edit(old: str, new: str) -> str:
    assert TEXT.count(old) == 1, old
    return TEXT.replace(old, new)


# (case, file text, what the error must say)
BROKEN = [
    ("unknown department", _edit("  court:\n", "  fire_brigade:\n"), "departments: unknown departments: fire_brigade"),
    ("unknown field", _edit("lead: {id_number: full}\n    support: {name: full, id_number: full}\n  traffic_police",
                            "lead: {passport: full}\n    support: {name: full, id_number: full}\n  traffic_police"),
     "departments.community_police.lead.passport: Extra inputs are not permitted"),
    ("unknown role", _edit("  court:\n    lead:", "  court:\n    observer:"), "departments.court.observer: Extra inputs are not permitted"),
    ("a name withheld", _edit("support: {name: masked,", "support: {name: withheld,"), "defaults.support.name: Input should be 'full' or 'masked'"),
    ("an age masked", _edit("revisit: {name: full, phone: full, id_number: withheld, age: full",
                            "revisit: {name: full, phone: full, id_number: withheld, age: masked"), "revisit.age: Input should be 'full' or 'withheld'"),
    ("a YAML boolean", _edit("lead: {name: full, phone: full,", "lead: {name: full, phone: no,"), "defaults.lead.phone: Input should be"),
    ("an unknown level", _edit("support: {name: masked, phone: masked,", "support: {name: masked, phone: partly,"), "defaults.support.phone: Input should be"),
    ("a field missing from the defaults", _edit("lead: {name: full, phone: full, id_number: withheld, age: full, vulnerable: full}",
                                                "lead: {name: full, phone: full, id_number: withheld, age: full}"), "defaults.lead.vulnerable: Field required"),
    ("no audit stream", _edit("events: {name: full, phone: full, id_number: withheld, age: full, vulnerable: full}", ""), "events: Field required"),
    ("an audit stream short of the revisit", _edit("events: {name: full, phone: full,", "events: {name: full, phone: masked,"),
     "events.phone: must show at least what revisit receives (full)"),
    ("an audit stream without needs", _edit("events: {name: full, phone: full, id_number: withheld, age: full, vulnerable: full}",
                                            "events: {name: full, phone: full, id_number: withheld, age: full, vulnerable: withheld}"),
     "events.vulnerable: must show at least what revisit receives (full)"),
    ("a policy where nobody needs the vulnerable", _edit("age: full, vulnerable: full}\n\n# The audit stream", "age: full, vulnerable: withheld}\n\n# The audit stream").replace(
        "events: {name: full, phone: full, id_number: withheld, age: full, vulnerable: full}",
        "events: {name: full, phone: full, id_number: withheld, age: full, vulnerable: withheld}"),
     "events.vulnerable: must be full: triage re-grades follow-up's reassessments by it"),
    ("no version", _edit('version: "2026.12.1"\n', ""), "version: Field required"),
    ("a bad version", _edit('version: "2026.12.1"', 'version: "2026 december"'), "version: String should match pattern"),
    ("not a mapping", "- full\n- masked\n", "top level must be a mapping"),
    ("not YAML", "defaults: {lead: [", "not valid YAML"),
]


@pytest.mark.parametrize(("text", "reason"), [(t, r) for _, t, r in BROKEN], ids=[c for c, _, _ in BROKEN])
def test_broken_disclosure_files_are_refused_naming_the_field(text, reason):
    with pytest.raises(DisclosureError) as refused:
        parse_disclosure(text)
    assert reason in str(refused.value)


def test_policy_text_reads_back_into_the_same_policy_and_id():
    again = parse_disclosure(disclosure_text(POLICY))
    assert again == POLICY and disclosure_id(again) == disclosure_id(POLICY)


def test_a_pinned_text_holds_the_table_and_the_policy_and_an_older_pin_takes_the_current_policy():
    other = parse_disclosure(_edit('version: "2026.12.1"', 'version: "2027.1.1"'))
    assert parse_pinned(pinned_text(TABLE, POLICY), other) == (TABLE, POLICY)
    assert parse_pinned(routing_text(TABLE), other) == (TABLE, other)


def test_disclosure_check_command(tmp_path):
    runner = CliRunner()
    assert "disclosure 2026.12.1 is valid" in runner.invoke(cli, ["disclosure", "check", str(DEFAULT_DISCLOSURE)]).output
    broken = tmp_path / "disclosure.yaml"
    broken.write_text(_edit("  court:\n", "  fire_brigade:\n"), encoding="utf-8")
    result = runner.invoke(cli, ["disclosure", "check", str(broken)])
    assert result.exit_code == 1 and "unknown departments: fire_brigade" in result.output


NOW = at("2026-03-02T10:00:00+08:00")
WITH_IDS = [PERSON, PERSON.model_copy(update={"role": "respondent", "name": "王五", "id_number": "330681201001011233", "phone": "13700000002",
                                             "age": 16, "vulnerable": ["minor"]})]


def _graded(**report) -> DisputeTriaged:
    raw = TRIAGED.model_dump(mode="json")
    raw["report"] |= {"category": "traffic_accident", "parties": [p.model_dump(mode="json") for p in WITH_IDS]} | report
    return DisputeTriaged.model_validate_json(json.dumps(raw | {"level": 2, "tier": "mediation_room", "urgency": "immediate", "flags": []}))


def _records(triaged: DisputeTriaged) -> list[tuple[str, str]]:
    """Return a first dispatch's records as the topics would hold them, after the report that caused them."""
    return _topics(triaged, dispatch(triaged, None, [], NOW, TABLE, WorkingCalendar(), POLICY))


def _topics(triaged: DisputeTriaged, effects: Effects) -> list[tuple[str, str]]:
    """Return a report and what dispatch published of it, as the topics would hold them."""
    records = [("disputes.reported", triaged.report.to_bytes().decode())]
    records += [(f"workorders.{o.department}", o.to_bytes().decode()) for o in [*effects.issued, *effects.notices]]
    return records + [("workorders.events", e.to_bytes().decode()) for e in effects.events]


def test_dispatch_discloses_each_order_and_the_audit_stream_by_the_policy():
    triaged = _graded()
    effects = dispatch(triaged, None, [], NOW, TABLE, WorkingCalendar(), POLICY)
    roles = [(o.department, o.role) for o in effects.issued]
    assert roles == [("community_police", "lead"), ("mediation_room", "lead"), ("traffic_police", "support"), ("women_federation", "support")]
    ids = {o.department: [p.id_number for p in o.parties] for o in effects.issued}
    assert ids == {"community_police": [p.id_number for p in WITH_IDS], "mediation_room": [None, None],
                   "traffic_police": [p.id_number for p in WITH_IDS], "women_federation": [None, None]}
    assert [(p.name, p.phone, p.age) for p in effects.issued[-1].parties] == [("李**", "139****0001", None), ("王**", "137****0002", None)]
    assert {o.disclosure for o in effects.issued} | {e.disclosure for e in effects.events} == {"2026.12.1"}
    assert [p.id_number for e in effects.events for p in e.report.parties] == [None] * 8
    # Dispatch keeps the whole report for the next attempt: only what leaves it is disclosed.
    assert effects.disputes[triaged.dispute_id].report.parties == WITH_IDS
    audit = audit_topics(_records(triaged), POLICY)
    assert audit.breaches == [] and audit.checked["traffic_police:support", "id_number", "full"] == 2


def test_a_reassessment_from_follow_up_gets_the_parties_dispatch_holds():
    triaged = _graded()
    held = Dispute(triaged.dispute_id, 1, 2, "immediate", triaged.report, triaged.report.history)
    # Follow-up only ever saw the audit stream's parties: no ID numbers.
    from_followup = _graded(parties=[p.model_dump(mode="json") for p in disclose(POLICY.events, WITH_IDS)])
    reassessed = from_followup.model_copy(update={"cause": "sla_breached"})
    assert with_known_parties(reassessed, held).report.parties == WITH_IDS
    assert with_known_parties(reassessed, None) is reassessed
    # A new report of the dispute says who the parties are now.
    assert with_known_parties(from_followup, held) is from_followup
    effects = dispatch(reassessed, held, [], NOW, TABLE, WorkingCalendar(), POLICY)
    assert [p.id_number for p in effects.issued[0].parties] == [p.id_number for p in WITH_IDS]


def _reported(dispute_id: str, event_id: str, parties: list[Party], hours: int, source: str, same_matter: tuple[str, ...] = ()) -> DisputeTriaged:
    """Return a graded report of a dispute naming these parties, `hours` after the first, of the matters named."""
    moment = (NOW + timedelta(hours=hours)).isoformat()
    raw = _graded().model_dump(mode="json") | {
        "event_id": f"tri-{event_id}", "source_event_id": event_id, "dispute_id": dispute_id, "same_matter": list(same_matter), "triaged_at": moment,
    }
    raw["report"] |= {"event_id": event_id, "dispute_id": dispute_id, "source": source, "reported_at": moment,
                      "parties": [p.model_dump(mode="json") for p in parties]}
    return DisputeTriaged.model_validate_json(json.dumps(raw))


def test_a_notice_is_audited_against_the_report_it_tells_of_not_the_case_it_joined():
    first = _graded()
    effects = dispatch(first, None, [], NOW, TABLE, WorkingCalendar(), POLICY)
    records, disputes = _topics(first, effects), dict(effects.disputes)
    orders = {first.dispute_id: {o.work_order_id: o for o in effects.orders.values()}}
    # Another dispute of the same matter joins, naming somebody new; then the first is reported again under its own id.
    newcomer = PERSON.model_copy(update={"name": "赵六", "id_number": "330681199202021234", "phone": "13600000003"})
    for report in (_reported("E-1", "src-e", [newcomer], 1, "police_110", (first.dispute_id,)), _reported(first.dispute_id, "src-again", WITH_IDS, 2, "hotline_12345")):
        own, matter = cases_for(report, {}, disputes, orders)
        taken = take_report(report, own, matter, TABLE, WorkingCalendar(), POLICY)
        records += _topics(report, taken)
        disputes |= taken.disputes
    told = [(n.reported_dispute_id, len(n.parties)) for n in taken.notices]
    assert len(disputes[first.dispute_id].report.parties) == 3 and told and set(told) == {(first.dispute_id, 2)}
    assert audit_topics(records, POLICY).breaches == []


def _tamper(records: list[tuple[str, str]], topic: str, change) -> list[tuple[str, str]]:
    out = []
    for name, raw in records:
        if name == topic:
            document = json.loads(raw)
            change(document)
            raw = json.dumps(document, ensure_ascii=False)
        out.append((name, raw))
    return out


def _party(n: int, **fields):
    def change(document):
        parties = document["report"]["parties"] if "report" in document else document["parties"]
        parties[n].update(fields)
    return change


# (case, topic, tampering, what the auditor must say)
LEAKS = [
    ("an ID number to a support department", "workorders.mediation_room", _party(0, id_number="33068119900101001X"), "party 0 id_number"),
    ("a full phone to a support department", "workorders.traffic_police", _party(1, phone="13700000002"), "a full phone number"),
    ("a full name to a reader of masked names", "workorders.women_federation", _party(1, name="王五"), "party 1 full name in the record"),
    ("a masked name to a reader of full names", "workorders.traffic_police", _party(0, name="李**"), "party 0 name"),
    ("an ID number on the audit stream", "workorders.events", _party(1, id_number="330681198001011233"), "an ID number in a record"),
    ("a masked phone to the lead", "workorders.mediation_room", _party(0, phone="139****0001"), "party 0 phone"),
    ("an age to a support department", "workorders.traffic_police", _party(0, age=34), "party 0 age"),
    ("a party dropped", "workorders.mediation_room", lambda d: d["parties"].pop(), "1 parties where 2 were reported"),
    ("another policy version", "workorders.mediation_room", lambda d: d.update(disclosure="2026.1.1"), "disclosed by '2026.1.1'"),
]


@pytest.mark.parametrize(("topic", "change", "found"), [(t, c, f) for _, t, c, f in LEAKS], ids=[c for c, _, _, _ in LEAKS])
def test_the_auditor_finds_every_kind_of_leak(topic, change, found):
    audit = audit_topics(_tamper(_records(_graded()), topic, change), POLICY)
    assert any(found in breach for breach in audit.breaches), audit.breaches
    assert not any("李四" in b or "1390000" in b or "33068119" in b for b in audit.breaches), "the auditor's findings hold no personal data"


def _due(followup_id: str, kind: str, parties: list, **fields) -> FollowupDue:
    base = {"dispute_id": _graded().dispute_id, "department": "mediation_room", "due_at": NOW, "fired_at": NOW}
    return FollowupDue(followup_id=followup_id, kind=kind, parties=parties, **(base | fields))


REVISIT = _due("fu-1", "revisit", disclose(POLICY.revisit, WITH_IDS), revisit_number=1, disclosure="2026.12.1")
# (case, the record added to a report and its revisit on the department's own due topic, the breach it is, or None)
DUE_AUDITS = [
    ("a revisit on its department's topic", None, None),
    ("the revisit stripped on the shared feed", ("followups.due", _due("fu-1", "revisit", [], revisit_number=1)), None),
    ("a deadline alert with parties", ("followups.mediation_room.due", _due("fu-2", "sla_warning", WITH_IDS)),
     "followups.mediation_room.due fu-2: parties on a sla_warning"),
    ("a revisit with parties on the shared feed", ("followups.due", REVISIT), "followups.due fu-1: parties on the shared feed"),
    ("another department's revisit", ("followups.court.due", REVISIT), "followups.court.due fu-1: a due of mediation_room"),
]


@pytest.mark.parametrize(("extra", "breach"), [(e, b) for _, e, b in DUE_AUDITS], ids=[c for c, _, _ in DUE_AUDITS])
def test_the_auditor_checks_revisits_on_department_topics_and_no_parties_on_the_shared_feed(extra, breach):
    records = [("disputes.reported", _graded().report.to_bytes().decode()), ("followups.mediation_room.due", REVISIT.to_bytes().decode())]
    found = audit_topics(records + ([(extra[0], extra[1].to_bytes().decode())] if extra else []), POLICY).breaches
    assert breach in found if breach else found == [], found


def test_orders_encode_with_masked_parties():
    order = dispatch(_graded(), None, [], NOW, TABLE, WorkingCalendar(), POLICY).issued[-1]
    record = encode_event("workorders.traffic_police", order, order.work_order_id, "/fengqiao/dispatch", order.issued_at)
    assert WorkOrderIssued.model_validate_json(record.value).parties[0].phone == "139****0001"


def test_simulated_id_numbers_carry_a_valid_check_character():
    assert id_check_character("11010519491231002") == "X"  # GB 11643-1999's own example


def test_a_broken_policy_offered_at_runtime_is_refused_and_the_old_one_keeps_serving():
    registry = CollectorRegistry()
    holder = disclosure_holder(TEXT, DispatchMetrics(registry))
    assert not holder.offer(_edit("  court:\n", "  fire_brigade:\n").replace('"2026.12.1"', '"2026.12.2"'), "file")
    assert holder.offer(_edit('version: "2026.12.1"', 'version: "2026.12.2"'), "file") and holder.version == "2026.12.2"
    active = {v: registry.get_sample_value("fengqiao_dispatch_disclosure_active", {"version": v}) for v in ("2026.12.1", "2026.12.2")}
    assert active == {"2026.12.1": 0, "2026.12.2": 1}
