"""Hostile input at scale against the running services: over 10,000 seeded mutations of every field of every
consumed topic, with hostile keys and headers, interleaved with good records, over the real broker.

Every good record takes effect exactly once; every hostile one becomes exactly one dead letter whose reason
names a field (or the message) and repeats none of the planted personal data; no service restarts.
"""

import asyncio
import json
import math
import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from aiokafka import AIOKafkaProducer
from pydantic import ValidationError

from schemas.deadletters import REASON, SOURCE_OFFSET, SOURCE_PARTITION, SOURCE_TOPIC
from schemas.disputes import DISPUTES_INVALID, DISPUTES_REASSESS, DISPUTES_REPORTED, DISPUTES_TRIAGED, DisputeReported, DisputeTriaged, ReassessmentRequested
from schemas.followups import FOLLOWUPS_DUE, FOLLOWUPS_RESULTS, FOLLOWUPS_RESULTS_INVALID, FollowupDue, FollowupResult
from schemas.workorders import (
    WORK_ORDER_EVENT,
    WORKORDERS_EVENTS,
    WORKORDERS_EVENTS_INVALID,
    WORKORDERS_UPDATES,
    WORKORDERS_UPDATES_INVALID,
    OrderStatusChanged,
    WorkOrderIssued,
    WorkOrderUpdate,
)
from services.dispatch.routing import assign, work_order_id
from services.followup.timers import followup_id
from services.runtime.settings import KafkaSettings
from services.runtime.topics import contract_topics, ensure_topics
from tests.conftest import fresh_prefix
from tests.support.department import Department
from tests.support.fed import TABLE, overdue, triaged
from tests.support.hostile import PLANTED_NAME, PLANTED_PHONE, assert_clean_reason
from tests.support.processes import ServiceProcess, read_all, start_service, wait_until_committed
from tests.support.samples import REASSESS, REPORT, report_payload

HOSTILE_PER_TOPIC = 1700
GOOD_EVERY = 10  # one good record after every ten hostile ones: 170 good per topic
PLANTED = f"{PLANTED_NAME} {PLANTED_PHONE}"
BAD_UTF8 = "\ue000bad-utf8\ue000"  # a placeholder swapped for invalid bytes once the payload is serialised
DEEP = "\ue001"  # around a depth: a placeholder swapped for that deep a nesting once serialised
NOW = datetime.now(timezone.utc)
AT = (NOW - timedelta(minutes=5)).isoformat()

# Hostile keys and headers ride on good and hostile records alike: neither may change what becomes of the value.
HOSTILE_KEYS = [b"", b"\xff\xfe\xc3\x28", b"k" * 100_000, PLANTED.encode(), b"\x00" * 64]
HOSTILE_HEADERS = [
    [("", b"")],
    # FastStream decodes every header value as UTF-8: one that is not once failed its whole batch for good.
    [("\x00\x07", b"\x00\x1b[31m"), ("bad-utf8", b"\xff\xfe\xc3\x28")],
    [("ce_id", b"\x00" * 10), ("ce_time", b"not a time"), ("ce_type", PLANTED.encode())],
    [("traceparent", b"00-zz-zz-01"), ("traceparent", "反向\u202e".encode())],
    [(REASON, PLANTED.encode()), (SOURCE_OFFSET, b"-1"), (SOURCE_TOPIC, b"\x00")],
    [(PLANTED, b"v" * 50_000)],
    [(f"h{i}", b"") for i in range(200)],
]


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, ensure_ascii=False))


def _paths(node: Any, path: tuple = ()) -> list[tuple]:
    """List the path of every value in a JSON tree, containers and leaves, nested ones included."""
    found = [path] if path else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, path + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, path + (index,))
    return found


def _deep(depth: int) -> bytes:
    # Built as bytes: the json module recurses and gives up long before a hostile sender does.
    return b'[{"a":' * depth + json.dumps(PLANTED, ensure_ascii=False).encode() + b"}]" * depth


MUTATIONS: dict[str, Callable[[random.Random], Any]] = {
    "wrong type: object": lambda rng: {"name": PLANTED, "phone": PLANTED_PHONE},
    "wrong type: list": lambda rng: [PLANTED, 1, None],
    "wrong type: bool": lambda rng: rng.choice([True, False]),
    "wrong type: null": lambda rng: None,
    "wrong type: float": lambda rng: rng.uniform(-1e6, 1e6),
    "number as text": lambda rng: str(rng.randint(0, 10)),
    "text instead": lambda rng: PLANTED,
    "huge number": lambda rng: rng.choice([10**40, -(10**40), 2**63, -(2**63) - 1]),
    "non-finite": lambda rng: rng.choice([math.nan, math.inf, -math.inf]),
    "empty text": lambda rng: "",
    "oversized text": lambda rng: PLANTED * rng.randint(400, 700),
    "NUL in text": lambda rng: f"{PLANTED_NAME}\x00{PLANTED_PHONE}",
    "control characters": lambda rng: f"{PLANTED}\x07\x08\x1b[31m\x7f\x85",
    "invalid UTF-8": lambda rng: BAD_UTF8,
    "deeply nested": lambda rng: f"{DEEP}{rng.choice([3, 60, 300, 2000])}{DEEP}",
}
STRUCTURAL = ["deleted key", "extra key", "personal data as key"]


def mutate(valid: dict, rng: random.Random, path: tuple) -> tuple[str, bytes]:
    """Return one mutation of the value at `path` of a valid payload, as the bytes a producer would send."""
    payload = json.loads(json.dumps(valid))
    *parent_path, last = path
    parent = payload
    for step in parent_path:
        parent = parent[step]
    kind = rng.choice(list(MUTATIONS) + STRUCTURAL)
    if kind == "deleted key":
        del parent[last]
    elif kind in ("extra key", "personal data as key"):
        target = parent[last] if isinstance(parent[last], dict) else parent
        if isinstance(target, list):
            target.append({PLANTED_PHONE: PLANTED})
        else:
            target[PLANTED_PHONE if kind == "personal data as key" else "admin"] = PLANTED
    else:
        parent[last] = MUTATIONS[kind](rng)
    value = json.dumps(payload, ensure_ascii=False, allow_nan=True).encode()
    if BAD_UTF8 in value.decode():
        value = value.replace(BAD_UTF8.encode(), b"\xff\xfe\xc3\x28" + PLANTED.encode() + b"\xed\xa0\x80")
    if DEEP.encode() in value:
        head, depth, tail = value.split(DEEP.encode())
        value = head[:-1] + _deep(int(depth)) + tail[1:]
    return f"{'.'.join(map(str, path))}: {kind}", value


def message_level(rng: random.Random, valid_bytes: bytes) -> bytes:
    """Return a hostile whole message: truncated, not JSON, not an object."""
    return rng.choice([
        valid_bytes[: rng.randint(1, len(valid_bytes) - 1)],
        bytes(rng.randrange(256) for _ in range(rng.randint(1, 300))),
        b"[" + PLANTED.encode() + b"]",
        b"null",
        b"   ",
        b"",
        valid_bytes + b"," + PLANTED.encode(),
    ])


@dataclass
class Feed:
    """One consumed topic: its service, the contract's own validator, a valid payload of number n, and its dead letters."""

    service: str
    topic: str
    invalid_topic: str
    validate: Callable[[bytes], Any]
    valid: Callable[[int], dict]
    hostile: list[tuple[int, int]] = field(default_factory=list)  # (partition, offset)
    good: list[tuple[int, int]] = field(default_factory=list)
    good_numbers: list[int] = field(default_factory=list)
    cases: dict[tuple[int, int], str] = field(default_factory=dict)


def reassess(n: int) -> dict:
    report = REPORT.model_copy(update={"event_id": f"rep-{n}", "dispute_id": f"R-{n}"})
    return _jsonable(json.loads(REASSESS.model_copy(update={"event_id": f"rea-{n}", "dispute_id": f"R-{n}", "report": report}).to_bytes()))


def records_for(feed: Feed, seed: int, first_good: int, update_for: Callable[[int], dict] | None = None) -> list[tuple[str, bytes | None, bytes, list]]:
    """Build the topic's interleaved records: (case, key, value, headers); a case of "" is good."""
    rng = random.Random(seed)
    template = feed.valid(10**6)
    paths = _paths(template)
    out: list[tuple[str, bytes | None, bytes, list]] = []
    number = first_good
    for i in range(HOSTILE_PER_TOPIC):
        if i % GOOD_EVERY == 0:
            good = json.dumps(feed.valid(number), ensure_ascii=False).encode()
            feed.validate(good)  # a good record must be good by the contract's own model
            out.append(("", f"G-{number}".encode() if i % 3 else rng.choice(HOSTILE_KEYS), good, rng.choice(HOSTILE_HEADERS) if i % 4 == 0 else []))
            feed.good_numbers.append(number)
            number += 1
        while True:
            # Every field, nested ones included, in turn; one record in twenty hostile as a whole message.
            if i % 20 == 19:
                case, value = "(message)", message_level(rng, json.dumps(template, ensure_ascii=False).encode())
            else:
                case, value = mutate(template, rng, paths[i % len(paths)])
            try:
                feed.validate(value)
            except (ValidationError, ValueError):
                break
            # By chance still valid (a null where null is allowed, a deleted optional key): not hostile, draw again.
        key = rng.choice(HOSTILE_KEYS) if rng.random() < 0.3 else b"bad"
        headers = rng.choice(HOSTILE_HEADERS) if rng.random() < 0.3 else []
        out.append((case, key, value, headers))
    return out


async def send_all(bootstrap: str, topic: str, feed: Feed, records: list) -> None:
    """Produce the records in one batch, awaiting the acknowledgements together, and note where each landed."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=4 * 1024 * 1024, linger_ms=5)
    await producer.start()
    try:
        pending = [await producer.send(topic, value, key=key, headers=headers) for _, key, value, headers in records]
        landed = await asyncio.gather(*pending)
    finally:
        await producer.stop()
    for (case, _, _, _), meta in zip(records, landed):
        (feed.hostile if case else feed.good).append((meta.partition, meta.offset))
        if case:
            feed.cases[(meta.partition, meta.offset)] = case


def header(record: Any, name: str) -> str:
    """Return the first header of that name as text."""
    return next(v.decode() for k, v in record.headers if k == name)


async def check_dead_letters(bootstrap: str, settings: KafkaSettings, feed: Feed, good_refused: bool = False) -> dict[str, int]:
    """Assert every hostile record of the topic is dead-lettered exactly once with a clean reason; return the figures."""
    topic = settings.topic(feed.topic)
    dead: dict[tuple[int, int], list[str]] = {}
    for record in await read_all(bootstrap, [settings.topic(feed.invalid_topic)]):
        if header(record, SOURCE_TOPIC) == topic:
            dead.setdefault((int(header(record, SOURCE_PARTITION)), int(header(record, SOURCE_OFFSET))), []).append(header(record, REASON))
    lost = [feed.cases[at] for at in feed.hostile if at not in dead]
    repeated = [at for at, reasons in dead.items() if len(reasons) > 1]
    leaked = [r for reasons in dead.values() for r in reasons if PLANTED_PHONE in r or PLANTED_NAME in r]
    assert not lost, f"{feed.topic}: {len(lost)} hostile records never dead-lettered, e.g. {lost[:5]}"
    assert not repeated and not leaked, (feed.topic, repeated[:5], leaked[:5])
    for reasons in dead.values():
        assert_clean_reason(reasons[0])
    good_dead = [at for at in feed.good if at in dead]
    if good_refused:
        assert len(good_dead) == len(feed.good), f"{feed.topic}: well-formed results about no revisit are refused by content"
    else:
        assert not good_dead, f"{feed.topic}: good records dead-lettered: {[dead[at] for at in good_dead[:5]]}"
    return {"tried": len(feed.hostile), "lost": len(lost), "repeated": len(repeated), "leaked": len(leaked)}


def ready_env(service: str, bootstrap: str, prefix: str, tmp_path) -> dict[str, str]:
    run = uuid.uuid4().hex[:8]
    return {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_TOPIC_PREFIX": prefix,
        f"{service.upper()}_GROUP_ID": f"{service}-{run}",
        f"{service.upper()}_BATCH_SIZE": "500",
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / (service + '.db')}",
        # Set only if dispatch has it: an update for no known order is dead-lettered at once, not parked.
        "DISPATCH_PARK_SECONDS": "0",
    }


async def test_ten_thousand_hostile_records_are_dead_lettered_cleanly_and_good_ones_take_effect_once(embedded_broker, tmp_path):
    bootstrap = embedded_broker.bootstrap_servers
    # Each service on its own prefix: one's good output must not become another's input here.
    settings = {name: KafkaSettings(bootstrap_servers=None, topic_prefix=fresh_prefix()) for name in ("triage", "dispatch", "followup")}
    for kafka in settings.values():
        await ensure_topics(kafka, bootstrap, contract_topics(partitions=2))
    envs = {name: ready_env(name, bootstrap, settings[name].topic_prefix, tmp_path) for name in settings}
    services: dict[str, ServiceProcess] = {name: start_service(name, envs[name], tmp_path) for name in settings}

    orders: dict[int, WorkOrderIssued] = {}

    def update(n: int) -> dict:
        order = orders.get(n) or next(iter(orders.values()), None)
        return {"event_id": f"upd-{n}", "work_order_id": order.work_order_id if order else "wo-x", "dispute_id": order.dispute_id if order else "D-x",
                "department": order.department if order else "community_police", "status": "accepted", "note": "已联系双方", "at": AT}

    def result(n: int) -> dict:
        return {"event_id": f"res-{n}", "followup_id": f"fu-{n}", "dispute_id": f"D-{n}", "satisfaction": 5,
                "agreement_fulfilled": True, "rebound": False, "at": AT}

    feeds = {
        DISPUTES_REPORTED: Feed("triage", DISPUTES_REPORTED, DISPUTES_INVALID, DisputeReported.model_validate_json,
                                lambda n: report_payload(event_id=f"evt-{n}", dispute_id=f"D-{n}", reported_at=AT)),
        DISPUTES_REASSESS: Feed("triage", DISPUTES_REASSESS, DISPUTES_INVALID, ReassessmentRequested.model_validate_json, reassess),
        DISPUTES_TRIAGED: Feed("dispatch", DISPUTES_TRIAGED, DISPUTES_INVALID, DisputeTriaged.model_validate_json,
                               lambda n: json.loads(triaged(n).to_bytes())),
        WORKORDERS_UPDATES: Feed("dispatch", WORKORDERS_UPDATES, WORKORDERS_UPDATES_INVALID, WorkOrderUpdate.model_validate_json, update),
        WORKORDERS_EVENTS: Feed("followup", WORKORDERS_EVENTS, WORKORDERS_EVENTS_INVALID, WORK_ORDER_EVENT.validate_json,
                                lambda n: json.loads(overdue(n).to_bytes())),
        FOLLOWUPS_RESULTS: Feed("followup", FOLLOWUPS_RESULTS, FOLLOWUPS_RESULTS_INVALID, FollowupResult.model_validate_json, result),
    }
    groups = {DISPUTES_REPORTED: "{triage}", DISPUTES_REASSESS: "{triage}", DISPUTES_TRIAGED: "{dispatch}.triaged",
              WORKORDERS_UPDATES: "{dispatch}.updates", WORKORDERS_EVENTS: "{followup}.events", FOLLOWUPS_RESULTS: "{followup}.results"}
    group_ids = {name: envs[name][f"{name.upper()}_GROUP_ID"] for name in envs}
    started = {name: (s.process.pid) for name, s in services.items()}
    try:
        for service in services.values():
            await service.wait_ready()
        first = asyncio.get_running_loop().time()
        built = {topic: records_for(feed, seed, 1000 * seed) for seed, (topic, feed) in enumerate(feeds.items(), start=1) if topic != WORKORDERS_UPDATES}
        await asyncio.gather(*(send_all(bootstrap, settings[feeds[t].service].topic(t), feeds[t], built[t]) for t in built))

        # Updates only for orders that exist: wait for dispatch to issue the good disputes' orders first.
        dispatch_kafka = settings["dispatch"]
        triaged_good = feeds[DISPUTES_TRIAGED].good_numbers
        expected_orders = {work_order_id(f"D-{n}", a.department, 1) for n in triaged_good for a in assign(triaged(n), TABLE)}

        async def issued() -> list[WorkOrderIssued]:
            return await Department(bootstrap, dispatch_kafka).orders()

        async def all_issued() -> bool:
            return {o.work_order_id for o in await issued()} >= expected_orders

        await services["dispatch"].wait_for(all_issued, 90)
        every_order = await issued()
        assert sorted(o.work_order_id for o in every_order) == sorted(expected_orders), "each work order exactly once"
        for o in every_order:
            orders.setdefault(int(o.dispute_id.removeprefix("D-")), o)
        updates = records_for(feeds[WORKORDERS_UPDATES], 4, triaged_good[0])
        feeds[WORKORDERS_UPDATES].good_numbers[:] = [n for n in feeds[WORKORDERS_UPDATES].good_numbers if n in orders]
        await send_all(bootstrap, dispatch_kafka.topic(WORKORDERS_UPDATES), feeds[WORKORDERS_UPDATES], updates)

        for topic, feed in feeds.items():
            group = groups[topic].format(**group_ids)
            await wait_until_committed(bootstrap, group, [settings[feed.service].topic(topic)], timeout=90)

        figures = {}
        for topic, feed in feeds.items():
            figures[topic] = await check_dead_letters(bootstrap, settings[feed.service], feed, good_refused=topic == FOLLOWUPS_RESULTS)

        # Good records: each took effect exactly once, counted by id.
        triage_out = [DisputeTriaged.model_validate_json(r.value).source_event_id for r in await read_all(bootstrap, [settings["triage"].topic(DISPUTES_TRIAGED)])]
        wanted = [f"evt-{n}" for n in feeds[DISPUTES_REPORTED].good_numbers] + [f"rea-{n}" for n in feeds[DISPUTES_REASSESS].good_numbers]
        assert sorted(triage_out) == sorted(wanted), "every good report and reassessment graded exactly once"

        changed = [e.work_order_id for e in (WORK_ORDER_EVENT.validate_json(r.value) for r in await read_all(bootstrap, [dispatch_kafka.topic(WORKORDERS_EVENTS)]))
                   if isinstance(e, OrderStatusChanged) and e.status == "accepted"]
        assert sorted(changed) == sorted(orders[n].work_order_id for n in feeds[WORKORDERS_UPDATES].good_numbers)

        expected_dues = {followup_id(f"wo-{n}", kind) for n in feeds[WORKORDERS_EVENTS].good_numbers for kind in ("sla_warning", "sla_breached")}

        async def dues() -> list[str]:
            return [FollowupDue.model_validate_json(r.value).followup_id for r in await read_all(bootstrap, [settings["followup"].topic(FOLLOWUPS_DUE)])]

        async def all_due() -> bool:
            return set(await dues()) >= expected_dues

        await services["followup"].wait_for(all_due, 60)
        assert sorted(await dues()) == sorted(expected_dues), "every good order's timers fired exactly once"

        # No restarts: the same processes, never exited, ready at the end.
        for name, service in services.items():
            assert service.process.pid == started[name] and service.process.poll() is None, service.log_tail()
            assert (await service.get("/health/ready"))[0] == 200, service.log_tail()
        print(f"hostile at scale in {asyncio.get_running_loop().time() - first:.1f} s:", json.dumps(figures))
        assert sum(f["tried"] for f in figures.values()) >= 10_000
    finally:
        for service in services.values():
            await asyncio.to_thread(service.stop)
