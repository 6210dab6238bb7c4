"""The disclosure policy as data, the masking of party details, and the pure choice of what each recipient receives.

Minimum necessary (最小必要, PIPL art. 6): a department's order, a revisit and the audit stream carry only the party
details their recipient needs, in full, masked or not at all, as `disclosure.yaml` says.
"""

import hashlib
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError, field_validator, model_validator

from schemas.common import Party
from schemas.disputes import DisputeReported
from schemas.workorders import DEPARTMENTS, Department, Role
from services.runtime.yamlfile import yaml_mapping

_Strict = ConfigDict(extra="forbid", frozen=True, strict=True)

Shown = Literal["full", "masked", "withheld"]
# Whether a field is shown at all matters more than how: the order in which a recipient's share may grow.
RANK = {"withheld": 0, "masked": 1, "full": 2}
# Compound surnames (复姓) keep both characters, so 欧阳修 reads 欧阳**, not 欧**.
COMPOUND_SURNAMES = frozenset(
    "欧阳 司马 上官 诸葛 东方 皇甫 尉迟 公孙 慕容 长孙 宇文 司徒 夏侯 令狐 端木 独孤 南宫 西门 轩辕 呼延 澹台 公冶 太史 申屠".split()
)
MASKED_PHONE = re.compile(r"^(?:[0-9]{3}\*{4}[0-9]{4}|\*{4})$")
MASKED_ID_NUMBER = re.compile(r"^(?:[0-9A-Za-z]{4}\*{1,24}[0-9A-Za-z]{4}|\*{4,8})$")


class DisclosureError(ValueError):
    """A disclosure policy that cannot be used; the message names the key."""


def mask_name(name: str) -> str:
    """Keep a person's surname and hide the rest: 李四 → 李**, 欧阳修 → 欧阳**."""
    name = name.strip() or name
    surname = name[:2] if name[:2] in COMPOUND_SURNAMES and len(name) > 2 else name[:1]
    return f"{surname}**"


def mask_phone(phone: str) -> str:
    """Keep the first 3 and last 4 digits: 13900000001 → 139****0001; too short a number keeps none."""
    if MASKED_PHONE.match(phone):
        return phone  # masked already (a record from the audit stream): masking twice must change nothing
    digits = re.sub(r"[^0-9]", "", phone)
    if len(digits) == 13 and digits.startswith("86"):
        digits = digits[2:]  # +86: the country code is no part of the number shown
    # Seven digits shown of fewer than eleven would leave a landline's few hidden ones guessable.
    return f"{digits[:3]}****{digits[-4:]}" if len(digits) >= 11 else "****"


def mask_id_number(id_number: str) -> str:
    """Keep the first 4 and last 4 characters: 330100199001011234 → 3301**********1234; a short one keeps none."""
    if MASKED_ID_NUMBER.match(id_number):
        return id_number
    hidden = len(id_number) - 8
    return f"{id_number[:4]}{'*' * hidden}{id_number[-4:]}" if hidden >= 4 else "*" * min(max(len(id_number), 4), 8)


class View(BaseModel):
    """What one recipient receives of each party field."""

    model_config = _Strict

    # A party needs a name to be told apart, and the contract requires one: never withheld.
    name: Literal["full", "masked"]
    phone: Shown
    id_number: Shown
    # Masking has no meaning for a number of years or a list of needs: shown or not.
    age: Literal["full", "withheld"]
    vulnerable: Literal["full", "withheld"]


class Override(BaseModel):
    """The fields of a view a department receives differently from the defaults."""

    model_config = _Strict

    name: Literal["full", "masked"] | None = None
    phone: Shown | None = None
    id_number: Shown | None = None
    age: Literal["full", "withheld"] | None = None
    vulnerable: Literal["full", "withheld"] | None = None


class ByRole(BaseModel):
    """Views of a lead and a supporting department."""

    model_config = _Strict

    lead: View
    support: View


class DepartmentOverrides(BaseModel):
    """A department's exceptions to the defaults, by role."""

    model_config = _Strict

    lead: Override = Override()
    support: Override = Override()


class DisclosurePolicy(BaseModel):
    """A whole disclosure file."""

    model_config = _Strict

    version: Annotated[str, StringConstraints(pattern=r"^[0-9A-Za-z][0-9A-Za-z._-]{0,47}$")]
    defaults: ByRole
    departments: dict[Department, DepartmentOverrides] = {}
    revisit: View
    events: View

    @field_validator("departments", mode="before")
    @classmethod
    def _known_departments(cls, departments: object) -> object:
        # Named here: the type's own message would list all twenty departments.
        if isinstance(departments, dict):
            unknown = sorted(str(d) for d in departments if d not in DEPARTMENTS)
            if unknown:
                raise ValueError(f"unknown departments: {', '.join(unknown)}")
        return departments

    @model_validator(mode="after")
    def _events_serve_followup(self) -> "DisclosurePolicy":
        # Follow-up builds revisits and reassessments from the audit stream's reports: it cannot give more than it got.
        for field in View.model_fields:
            if RANK[getattr(self.events, field)] < RANK[getattr(self.revisit, field)]:
                raise ValueError(f"events.{field}: must show at least what revisit receives ({getattr(self.revisit, field)})")
        if self.events.vulnerable != "full":
            raise ValueError("events.vulnerable: must be full: triage re-grades follow-up's reassessments by it")
        return self

    def view(self, department: str, role: str) -> View:
        """Return what `department` receives as `role`: the role's defaults with the department's exceptions."""
        base = getattr(self.defaults, role)
        overrides = self.departments.get(department)
        if overrides is None:
            return base
        changed = getattr(overrides, role).model_dump(exclude_none=True)
        return base.model_copy(update=changed) if changed else base


def parse_disclosure(text: str) -> DisclosurePolicy:
    """Validate a disclosure file's text; raise DisclosureError naming the key on any problem."""
    try:
        return DisclosurePolicy.model_validate(yaml_mapping(text))
    except ValidationError as error:
        problems = error.errors(include_url=False, include_input=False)
        raise DisclosureError("; ".join(_problem(p) for p in problems)) from None
    except ValueError as error:
        raise DisclosureError(str(error)) from None


def _problem(problem: dict) -> str:
    where = ".".join(map(str, problem["loc"]))
    message = problem["msg"].removeprefix("Value error, ")
    # A model validator's message names its own key.
    return f"{where}: {message}" if where else message


def load_disclosure(path: Path) -> DisclosurePolicy:
    """Read and validate a disclosure file."""
    return parse_disclosure(path.read_text(encoding="utf-8"))


DEFAULT_DISCLOSURE = Path(__file__).parent / "disclosure.yaml"


def disclosure_text(policy: DisclosurePolicy) -> str:
    """Write a policy back as disclosure-file text that `parse_disclosure` reads into an equal policy."""
    return yaml.safe_dump(policy.model_dump(mode="python"), allow_unicode=True, sort_keys=True)


def disclosure_id(policy: DisclosurePolicy) -> str:
    """Name a policy by version and content."""
    return f"{policy.version}@{hashlib.sha256(disclosure_text(policy).encode()).hexdigest()[:12]}"


def disclose_party(view: View, party: Party) -> Party:
    """Return the party as `view` lets its recipient see it."""
    changed: dict[str, object] = {}
    if view.name == "masked" and party.kind == "person":
        changed["name"] = mask_name(party.name)  # an organisation's name is no personal information
    if party.phone is not None and view.phone != "full":
        changed["phone"] = mask_phone(party.phone) if view.phone == "masked" else None
    if party.id_number is not None and view.id_number != "full":
        changed["id_number"] = mask_id_number(party.id_number) if view.id_number == "masked" else None
    if party.age is not None and view.age == "withheld":
        changed["age"] = None
    if party.vulnerable and view.vulnerable == "withheld":
        changed["vulnerable"] = []
    return party.model_copy(update=changed) if changed else party


def disclose(view: View, parties: list[Party]) -> list[Party]:
    """Return the parties as `view` lets its recipient see them."""
    return [disclose_party(view, party) for party in parties]


def disclose_to(policy: DisclosurePolicy, department: str, role: Role, parties: list[Party]) -> list[Party]:
    """Return the parties as `department`'s order in `role` carries them."""
    return disclose(policy.view(department, role), parties)


def for_events(policy: DisclosurePolicy, report: DisputeReported) -> DisputeReported:
    """Return the report as the audit stream workorders.events carries it."""
    return report.model_copy(update={"parties": disclose(policy.events, report.parties)})
