"""The routing table as data, and the pure routing decision: which departments, in which role, by when."""

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from schemas.common import Category, MatchedRule, Tier, Urgency, Vulnerability
from schemas.disputes import DisputeReported, DisputeTriaged
from schemas.workorders import Department, WorkOrderIssued
from services.dispatch.calendar import WorkingCalendar
from services.dispatch.disclosure import DisclosurePolicy, disclose_to, parse_disclosure
from services.runtime.yamlfile import yaml_mapping

_Strict = ConfigDict(extra="forbid", frozen=True, strict=True)
_Text = Annotated[str, StringConstraints(min_length=1, max_length=500)]


class RoutingError(ValueError):
    """A routing table that cannot be used; the message names the key."""


class FirstResponse(BaseModel):
    """The first-response order: who, for which urgency, within how many hours (wall clock)."""

    model_config = _Strict

    urgency: Urgency
    department: Department
    due_hours: Annotated[int, Field(ge=1, le=72)]


class CasePolicy(BaseModel):
    """How long after its resolution a case is reopened by a new report of it, as a rebound, rather than started afresh."""

    model_config = _Strict

    reopen_within_days: Annotated[int, Field(ge=0, le=365)] = 30


class Instructions(BaseModel):
    """What each kind of order tells the department."""

    model_config = _Strict

    lead: _Text
    support: _Text
    first_response: _Text
    returned: _Text


class RoutingTable(BaseModel):
    """A whole routing file."""

    model_config = _Strict

    version: Annotated[str, StringConstraints(pattern=r"^[0-9A-Za-z][0-9A-Za-z._-]{0,47}$")]
    lead_by_tier: dict[Tier, Department]
    category_support_from_level: Literal[1, 2, 3]
    category_support: dict[Category, Department]
    level_support: dict[Literal[1, 2, 3], list[Department]] = {}
    flag_support: dict[Annotated[str, StringConstraints(pattern=r"^[a-z_]{1,64}$")], Department] = {}
    vulnerable_support: dict[Vulnerability, Department] = {}
    first_response: FirstResponse
    deadline_working_days: dict[Literal[1, 2, 3], Annotated[int, Field(ge=1, le=365)]]
    returned_to: Department
    instructions: Instructions
    cases: CasePolicy = CasePolicy()

    @field_validator("lead_by_tier")
    @classmethod
    def _every_tier(cls, leads: dict[str, str]) -> dict[str, str]:
        missing = {"on_site", "mediation_room", "joint_consultation"} - set(leads)
        if missing:
            raise ValueError(f"missing tiers: {', '.join(sorted(missing))}")
        return leads

    @field_validator("deadline_working_days")
    @classmethod
    def _every_level(cls, days: dict[int, int]) -> dict[int, int]:
        if set(days) != {1, 2, 3}:
            raise ValueError("must give levels 1, 2 and 3")
        return days


def parse_routing(text: str) -> RoutingTable:
    """Validate a routing file's text; raise RoutingError naming the key on any problem."""
    try:
        return RoutingTable.model_validate(yaml_mapping(text))
    except ValidationError as error:
        problems = error.errors(include_url=False, include_input=False)
        raise RoutingError("; ".join(f"{'.'.join(map(str, p['loc']))}: {p['msg']}" for p in problems)) from None
    except ValueError as error:
        raise RoutingError(str(error)) from None


def load_routing(path: Path) -> RoutingTable:
    """Read and validate a routing file."""
    return parse_routing(path.read_text(encoding="utf-8"))


DEFAULT_ROUTING = Path(__file__).parent / "routing.yaml"


def routing_text(table: RoutingTable) -> str:
    """Write a table back as routing-file text that `parse_routing` reads into an equal table."""
    # YAML, not the model's JSON: JSON would turn the integer level keys into strings the strict model refuses.
    return yaml.safe_dump(table.model_dump(mode="python"), allow_unicode=True, sort_keys=True)


def routing_id(table: RoutingTable, text: str | None = None) -> str:
    """Name a table by version and content, so a pin always finds the very table it was taken on."""
    digest = hashlib.sha256((text or routing_text(table)).encode()).hexdigest()
    return f"{table.version}@{digest[:12]}"


def pinned_text(table: RoutingTable, disclosure: DisclosurePolicy) -> str:
    """Write a routing table and the disclosure policy used with it as one pinned text; `routing_id` names it."""
    # Pinned together: a redelivered input must disclose to each department exactly what its first try did.
    document = {"routing": table.model_dump(mode="python"), "disclosure": disclosure.model_dump(mode="python")}
    return yaml.safe_dump(document, allow_unicode=True, sort_keys=True)


def parse_pinned(text: str, current_disclosure: DisclosurePolicy) -> tuple[RoutingTable, DisclosurePolicy]:
    """Read a pinned text back; a routing pinned before disclosure policies existed is used with the current one."""
    document = yaml_mapping(text)
    if set(document) != {"routing", "disclosure"}:
        return parse_routing(text), current_disclosure
    return parse_routing(yaml.safe_dump(document["routing"])), parse_disclosure(yaml.safe_dump(document["disclosure"]))


@dataclass(frozen=True)
class Assignment:
    """One department's part in a dispute: role and why."""

    department: str
    role: Literal["lead", "support"]
    first_response: bool = False


def assign(triaged: DisputeTriaged, table: RoutingTable) -> list[Assignment]:
    """Decide who handles a graded dispute; each department once, lead before support."""
    lead = table.lead_by_tier[triaged.tier]
    leads = [Assignment(lead, "lead")]
    if triaged.urgency == table.first_response.urgency:
        first = table.first_response.department
        leads = [Assignment(first, "lead", True)] + [a for a in leads if a.department != first]
    support: list[str] = []
    if triaged.level >= table.category_support_from_level and triaged.report.category in table.category_support:
        support.append(table.category_support[triaged.report.category])
    support += table.level_support.get(triaged.level, [])
    support += [dept for flag, dept in table.flag_support.items() if flag in triaged.flags]
    vulnerable = {v for party in triaged.report.parties for v in party.vulnerable}
    support += [dept for v, dept in table.vulnerable_support.items() if v in vulnerable]
    taken = {a.department for a in leads}
    unique_support = [d for i, d in enumerate(support) if d not in taken and d not in support[:i]]
    return leads + [Assignment(d, "support") for d in unique_support]


def work_order_id(dispute_id: str, department: str, attempt: int) -> str:
    """Derive an order's id: the same dispute, department and attempt always give the same id."""
    digest = hashlib.sha256(f"{dispute_id}\x1f{department}\x1f{attempt}".encode()).hexdigest()
    return f"wo-{digest[:40]}"


def due_at(assignment: Assignment, level: int, issued_at: datetime, table: RoutingTable, calendar: WorkingCalendar) -> datetime:
    """Deadline of an order: the first-response hour on the clock, else working days by level."""
    if assignment.first_response:
        return issued_at + timedelta(hours=table.first_response.due_hours)
    return calendar.add_working_days(issued_at, table.deadline_working_days[level])


def issue_order(
    report: DisputeReported,
    assignment: Assignment,
    grade: tuple[int, str, str],
    attempt: int,
    issued_at: datetime,
    instructions: str,
    matched_rules: list[MatchedRule],
    table: RoutingTable,
    calendar: WorkingCalendar,
    disclosure: DisclosurePolicy,
) -> WorkOrderIssued:
    """Write one department's order for a dispute, with the party details its policy allows; `grade` is (level, tier, urgency)."""
    level, tier, urgency = grade
    return WorkOrderIssued(
        work_order_id=work_order_id(report.dispute_id, assignment.department, attempt),
        dispute_id=report.dispute_id,
        department=assignment.department,
        role=assignment.role,
        level=level,
        tier=tier,
        urgency=urgency,
        attempt=attempt,
        first_response=assignment.first_response,
        issued_at=issued_at,
        due_at=due_at(assignment, level, issued_at, table, calendar),
        category=report.category,
        region=report.region,
        description=report.description,
        instructions=instructions,
        parties=disclose_to(disclosure, assignment.department, assignment.role, report.parties),
        matched_rules=matched_rules,
        disclosure=disclosure.version,
    )


def route(
    triaged: DisputeTriaged, attempt: int, issued_at: datetime, table: RoutingTable, calendar: WorkingCalendar, disclosure: DisclosurePolicy
) -> list[WorkOrderIssued]:
    """Turn a graded dispute into its work orders for one attempt."""
    grade = (triaged.level, triaged.tier, triaged.urgency)
    return [
        issue_order(
            triaged.report, assignment, grade, attempt, issued_at,
            getattr(table.instructions, "first_response" if assignment.first_response else assignment.role),
            triaged.matched_rules, table, calendar, disclosure,
        )
        for assignment in assign(triaged, table)
    ]
