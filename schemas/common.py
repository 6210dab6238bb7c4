"""Building blocks shared by every contract: base model, identifiers, timestamps, parties."""

import re
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, StringConstraints, TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError

# Strict so that "3" is not silently taken for 3 and a timestamp must be an RFC 3339 string in JSON.
_CONTRACT_CONFIG = ConfigDict(frozen=True, extra="forbid", strict=True)


class Contract(BaseModel):
    """Base of every event and command: frozen, strict, unknown fields rejected."""

    model_config = _CONTRACT_CONFIG

    # CloudEvents `type` attribute; each concrete event overrides it.
    ce_type: ClassVar[str] = ""

    def to_bytes(self) -> bytes:
        """Serialise the event as UTF-8 JSON, the wire format on every topic."""
        # model_dump_json() decodes the serializer's bytes into text, which the wire would encode again.
        return self.__pydantic_serializer__.to_json(self)

    def to_bytes_with(self, last_field: str, encoded: bytes) -> bytes:
        """Serialise as `to_bytes` does, taking the last field's value already encoded (a report several outputs carry)."""
        if next(reversed(type(self).__pydantic_fields__)) != last_field:
            raise ValueError(f"{last_field} is not the last field of {type(self).__name__}")
        head = self.__pydantic_serializer__.to_json(self, exclude={last_field})
        separator = b"," if len(head) > 2 else b""
        return head[:-1] + separator + f'"{last_field}":'.encode() + encoded + b"}"


# Control characters have no use in any field, and PostgreSQL cannot store NUL: identifiers refuse every one
# (C0, DEL, C1), free text keeps tabs and line breaks. Patterns run in pydantic's Rust regex, where `$` is the very
# end of the text (measured: Python's re.search lets one trailing newline through, and the Rust engine refuses
# lookarounds), so the JSON Schemas spell every final `$` as `$(?!\n)`: see schemas/generate.py.
NO_CONTROL = r"^[^\x00-\x1f\x7f-\x9f]*$"
TEXT = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$"


def _integral(value: Any) -> Any:
    # JSON has one number type: a JSON Schema "integer" is any number with no fraction, so 5.0 and 5e0 are 5 there,
    # and the service must agree. Text stays refused ("5" is not 5): only a float with nothing after the point passes.
    return int(value) if type(value) is float and value.is_integer() else value


# Every integer of every contract: strict, yet a number written 5.0 is the integer 5, as the JSON Schemas say.
Integral = BeforeValidator(_integral)

# RFC 3339 section 5.6 and nothing looser: a T (or t), seconds, and a Z or an offset with its colon. pydantic alone
# would take a space, no seconds, or +0800 (ISO 8601 forms); the JSON Schema states the same pattern next to
# format date-time, whose checker refuses impossible dates (2026-02-30) as pydantic does. Year 0000 is valid RFC 3339
# but no Python datetime: refused on both sides. Written to mean the same in ECMA 262, Python and Rust regex.
RFC3339 = (
    r"^(?:[1-9][0-9]{3}|0[1-9][0-9]{2}|00[1-9][0-9]|000[1-9])-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
    r"[Tt](?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]+)?(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$"
)
_RFC3339 = re.compile(RFC3339)


# pydantic's own datetime parser (speedate), for a string that has passed the pattern: in strict mode a validator
# ahead of the datetime hands it text it would refuse, so the text is parsed here, exactly as JSON input would be.
_DATETIME = TypeAdapter(AwareDatetime)


def _rfc3339_text(value: Any) -> Any:
    # Only text from the wire is checked here: a datetime built in code has no spelling to be wrong about.
    if not isinstance(value, str):
        return value
    # The messages never repeat the input, which a sender may have filled with anything.
    if _RFC3339.fullmatch(value) is None:
        if _RFC3339.fullmatch(value + "Z"):  # well formed but naive: pydantic's own words, which operators know
            raise PydanticCustomError("timezone_aware", "Input should have timezone info")
        raise PydanticCustomError(
            "rfc3339", "Input should be an RFC 3339 date-time with seconds and a timezone offset, like 2026-03-02T09:30:00+08:00"
        )
    try:
        return _DATETIME.validate_python(value, strict=False)
    except ValidationError as error:  # an impossible date or time: 2026-02-30, or beyond the year 9999 with its offset
        first = error.errors(include_url=False, include_input=False)[0]
        raise PydanticCustomError(first["type"], first["msg"]) from None


Timestamp = Annotated[
    AwareDatetime,
    BeforeValidator(_rfc3339_text),
    Field(description="RFC 3339 timestamp: a T, seconds and an offset with its colon; naive times are rejected", json_schema_extra={"pattern": RFC3339}),
]
EventId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=NO_CONTROL), Field(description="Unique id of this event")]
DisputeId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$"),
    Field(description="Stable id of the dispute; the Kafka key of every event about it"),
]
Note = Annotated[str, StringConstraints(max_length=2000, pattern=TEXT)]

Level = Literal[1, 2, 3]
Tier = Literal["on_site", "mediation_room", "joint_consultation"]
Urgency = Literal["routine", "urgent", "immediate"]

TIER_BY_LEVEL: dict[int, str] = {1: "on_site", 2: "mediation_room", 3: "joint_consultation"}

Category = Literal[
    "family_marriage",
    "neighbor",
    "land_homestead",
    "labor_wage",
    "contract_debt",
    "property_management",
    "demolition_resettlement",
    "land_transfer",
    "enterprise_restructuring",
    "construction",
    "traffic_accident",
    "medical",
    "environment",
    "consumer_quality",
    "education_campus",
    "other",
]

Vulnerability = Literal["minor", "elderly", "disabled", "pregnant"]


# A full value, or its masked form (only ever in outgoing records): 3301**********1234 and 139****0001; too short a
# value to show any part of is all stars. Every value valid before stays valid.
ID_NUMBER = r"^(?:[0-9A-Za-z]+|[0-9A-Za-z]{4}\*{1,24}[0-9A-Za-z]{4}|\*{4,8})$"
PHONE = r"^(?:\+?[0-9][0-9 -]*|[0-9]{3}\*{4}[0-9]{4}|\*{4})$"
_ID_NUMBER_TEXT = "ID number, or masked (3301**********1234) where the recipient's disclosure policy says so"
_PHONE_TEXT = "Phone number, or masked (139****0001) where the recipient's disclosure policy says so"
DisclosureVersion = Annotated[
    str,
    StringConstraints(min_length=1, max_length=48, pattern=r"^[0-9A-Za-z][0-9A-Za-z._-]{0,47}$"),
    Field(description="Version of the disclosure policy that chose which party details this record carries"),
]


class Party(Contract):
    """A person or organisation on one side of a dispute; the only place contact details live."""

    role: Literal["complainant", "respondent", "other"]
    kind: Literal["person", "organization"]
    name: Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=TEXT)]
    # Outgoing records may carry these masked, as the disclosure policy says (services/dispatch/disclosure.yaml).
    id_number: Annotated[str, StringConstraints(min_length=4, max_length=32, pattern=ID_NUMBER), Field(description=_ID_NUMBER_TEXT)] | None = None
    phone: Annotated[str, StringConstraints(min_length=3, max_length=24, pattern=PHONE), Field(description=_PHONE_TEXT)] | None = None
    age: Annotated[int, Field(ge=0, le=150), Integral] | None = None
    vulnerable: Annotated[list[Vulnerability], Field(max_length=4)] = []


class MatchedRule(Contract):
    """A triage rule that matched, with its reason in Chinese for the people who read it."""

    id: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=NO_CONTROL)]
    reason: Annotated[str, StringConstraints(min_length=1, max_length=500, pattern=TEXT)]


def rfc3339(moment: datetime) -> str:
    """Format an aware datetime as RFC 3339, the form used in headers and logs."""
    if moment.tzinfo is None:
        raise ValueError("timestamp must be timezone-aware")
    return moment.isoformat()


def by_notice(default: str) -> Discriminator:
    """Tell a topic's records apart: a notice names its kind in `notice`; the topic's first record type names none."""

    def kind(value: Any) -> str:
        # Orders and dues predate notices and carry no discriminator of their own: anything without `notice` is one.
        return value.get("notice", default) if isinstance(value, dict) else getattr(value, "notice", default)

    return Discriminator(kind)
