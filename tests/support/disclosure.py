"""An auditor of disclosure: every party detail on every outgoing topic against what the policy lets its reader see."""

import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from schemas.common import Party
from schemas.disputes import DisputeReported
from schemas.followups import FOLLOWUP_MESSAGE, FOLLOWUPS_DUE, FollowupDue, ResultAnswered, due_topic
from schemas.workorders import DEPARTMENT_MESSAGE, DEPARTMENTS, WORK_ORDER_EVENT, CaseNotice, WorkOrderIssued
from services.dispatch.disclosure import DisclosurePolicy, View, mask_id_number, mask_name, mask_phone

# Whatever the parsed fields say, the raw record must not hold a full mainland ID number or mobile number either.
# Not within a longer run of letters and digits: a work order id's hex once held eleven digits in a row.
ID_NUMBER = re.compile(r"(?<![0-9A-Za-z])\d{17}[0-9Xx](?![0-9A-Za-z])")
MOBILE = re.compile(r"(?<![0-9A-Za-z.])1[3-9]\d{9}(?![0-9A-Za-z])")
# Each department's own due topic: its deadline alerts, and its revisits with the parties as the revisit team sees them.
DUE_TOPICS = {due_topic(d) for d in DEPARTMENTS}


@dataclass
class Audit:
    """What the audit found: breaches (no personal data in them), and how often each (reader, field, shown) was checked."""

    breaches: list[str] = field(default_factory=list)
    checked: Counter = field(default_factory=Counter)
    records: Counter = field(default_factory=Counter)


def _expected(view: View, original: Party) -> dict[str, object]:
    def shown(how: str, value, mask):
        return value if how == "full" or value is None else (mask(value) if how == "masked" else None)

    return {
        "name": original.name if view.name == "full" or original.kind != "person" else mask_name(original.name),
        "phone": shown(view.phone, original.phone, mask_phone),
        "id_number": shown(view.id_number, original.id_number, mask_id_number),
        "age": original.age if view.age == "full" else None,
        "vulnerable": original.vulnerable if view.vulnerable == "full" else [],
    }


def _check(audit: Audit, reader: str, where: str, view: View, parties: list[Party], originals: list[Party] | None, raw: str) -> None:
    if originals is None:
        audit.breaches.append(f"{where}: no report of this dispute was seen")
        return
    if len(parties) != len(originals):
        audit.breaches.append(f"{where}: {len(parties)} parties where {len(originals)} were reported")
        return
    for n, (party, original) in enumerate(zip(parties, originals)):
        for name, expected in _expected(view, original).items():
            if getattr(party, name) != expected:
                audit.breaches.append(f"{where}: party {n} {name} is not as the policy shows it ({getattr(view, name)})")
            if getattr(original, name) not in (None, []):
                audit.checked[reader, name, getattr(view, name)] += 1
        if view.name == "masked" and original.kind == "person" and original.name in raw:
            audit.breaches.append(f"{where}: party {n} full name in the record")
    if view.id_number != "full" and ID_NUMBER.search(raw):
        audit.breaches.append(f"{where}: an ID number in a record whose reader may not see one")
    if view.phone != "full" and MOBILE.search(raw):
        audit.breaches.append(f"{where}: a full phone number in a record whose reader may not see one")


def audit_topics(records: Iterable[tuple[str, str]], policy: DisclosurePolicy) -> Audit:
    """Check every record, (topic without prefix, JSON text), against the policy and the parties as reported."""
    records = list(records)
    reports = [DisputeReported.model_validate_json(raw) for topic, raw in records if topic == "disputes.reported"]
    audit, cases = Audit(), _cases(records, reports)
    # A notice carries the parties of the report it tells of, not the case's: another dispute joined as the same matter
    # may have added people to the case that this report never named.
    reported = {(r.dispute_id, r.reported_at, r.source): r.parties for r in reports}
    for topic, raw in records:
        if topic == "workorders.events":
            event = WORK_ORDER_EVENT.validate_json(raw)
            if event.kind in ("issued", "dispute_resolved"):
                audit.records[topic] += 1
                _version(audit, topic, event.disclosure, policy)
                where = f"{topic} {event.kind} {event.dispute_id}"
                _check(audit, "events", where, policy.events, event.report.parties, cases[event.dispute_id].at(event.report.parties), raw)
        elif topic == FOLLOWUPS_DUE:
            # The operators' feed: every department's dues, none with a party or any trace of one.
            due = FollowupDue.model_validate_json(raw)
            audit.records[topic] += 1
            if due.parties or due.disclosure is not None:
                audit.breaches.append(f"{topic} {due.followup_id}: parties on the shared feed")
            if ID_NUMBER.search(raw) or MOBILE.search(raw):
                audit.breaches.append(f"{topic} {due.followup_id}: a phone or ID number on the shared feed")
        elif topic in DUE_TOPICS:
            due = FOLLOWUP_MESSAGE.validate_json(raw)
            audit.records[topic] += 1
            if isinstance(due, ResultAnswered):  # an answer to a revisit result: it names the revisit, never people
                if topic != due_topic(due.department):
                    audit.breaches.append(f"{topic} {due.event_id}: an answer for {due.department}")
                continue
            if topic != due_topic(due.department):
                audit.breaches.append(f"{topic} {due.followup_id}: a due of {due.department}")
            if due.kind == "revisit":
                _version(audit, topic, due.disclosure, policy)
                _check(audit, "revisit", f"{topic} {due.followup_id}", policy.revisit, due.parties, cases[due.dispute_id].at(due.parties), raw)
            elif due.parties:
                audit.breaches.append(f"{topic} {due.followup_id}: parties on a {due.kind}")
        elif topic.removeprefix("workorders.") in DEPARTMENTS:
            order = DEPARTMENT_MESSAGE.validate_json(raw)
            audit.records[topic] += 1
            if isinstance(order, CaseNotice):
                _notice(audit, topic, order, policy, reported.get((order.reported_dispute_id, order.reported_at, order.source)), raw)
                continue
            if not isinstance(order, WorkOrderIssued):  # an answer or a cancellation: it names orders, never people
                if topic != f"workorders.{order.department}":
                    audit.breaches.append(f"{topic} {order.event_id}: a notice for {order.department}")
                continue
            if topic != f"workorders.{order.department}":
                audit.breaches.append(f"{topic} {order.work_order_id}: an order of {order.department}")
            _version(audit, topic, order.disclosure, policy)
            view = policy.view(order.department, order.role)
            _check(audit, f"{order.department}:{order.role}", f"{topic} {order.work_order_id}", view, order.parties, cases[order.dispute_id].at(order.parties), raw)
    return audit


@dataclass
class _Case:
    """A case's parties as dispatch gathers them: the first report's, then each joining report's new ones, appended."""

    parties: list[Party]
    sizes: set[int] = field(default_factory=set)

    def at(self, shown: list[Party]) -> list[Party] | None:
        """Return the parties the case had when a record showing `shown` was made (gathering only appends)."""
        return self.parties[: len(shown)] if len(shown) in self.sizes else self.parties


def _cases(records: list[tuple[str, str]], reports: list[DisputeReported]) -> dict[str, _Case]:
    by_event, cases = {}, {}
    for report in reports:
        by_event[report.event_id] = report
        if report.dispute_id not in cases:
            cases[report.dispute_id] = _Case(list(report.parties), {len(report.parties)})
    for topic, raw in records:
        if topic == "workorders.events":
            event = WORK_ORDER_EVENT.validate_json(raw)
            if event.kind == "reported_again" and event.source_event_id in by_event and event.dispute_id in cases:
                case = cases[event.dispute_id]
                known = {(p.name, p.id_number, p.phone) for p in case.parties}
                case.parties += [p for p in by_event[event.source_event_id].parties if (p.name, p.id_number, p.phone) not in known]
                case.sizes.add(len(case.parties))
    return defaultdict(lambda: _Case([]), cases)


def _notice(audit: Audit, topic: str, notice: CaseNotice, policy: DisclosurePolicy, reported: list | None, raw: str) -> None:
    # A case notice carries the new report's parties as its department's role in the case may see them.
    if topic != f"workorders.{notice.department}":
        audit.breaches.append(f"{topic} {notice.event_id}: a notice for {notice.department}")
    _version(audit, topic, notice.disclosure, policy)
    view = policy.view(notice.department, notice.role)
    _check(audit, f"{notice.department}:{notice.role}", f"{topic} {notice.event_id}", view, notice.parties, reported, raw)


def _version(audit: Audit, where: str, version: str | None, policy: DisclosurePolicy) -> None:
    if version != policy.version:
        audit.breaches.append(f"{where}: disclosed by {version!r}, not {policy.version!r}")


def read_dump(text: str) -> list[tuple[str, str]]:
    """Read a run's `--dump-topics` file: one JSON object with topic and value a line."""
    return [(line["topic"], line["value"]) for line in map(json.loads, text.splitlines())]
