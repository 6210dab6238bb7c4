"""Triage's batch pipeline: decode, drop repeats, enrich, grade, publish, record. Offsets are committed by the caller after it returns."""

import asyncio
import hashlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from schemas.deadletters import rejection_reason
from schemas.disputes import (
    DISPUTES_INVALID,
    DISPUTES_REASSESS,
    DISPUTES_TRIAGED,
    DisputeReported,
    DisputeTriaged,
    ReassessmentRequested,
    RiskDetection,
)
from services.runtime.clock import Clock
from services.runtime.deadletter import dead_letter, too_large
from services.runtime.faults import fault_point
from services.runtime.kafka import Outgoing, encode_event
from services.runtime.reload import Reloadable
from services.runtime.retry import Readiness, retry_holding
from services.runtime.settings import KafkaSettings
from services.runtime.store import written_beside
from services.triage.correlation import Hasher, Subject, correlate, matter_probes, probes, same_matter, subject_of
from services.triage.detection import Detection
from services.triage.grading import Features, Grader, Triage
from services.triage.metrics import TriageMetrics
from services.triage.settings import TriageSettings
from services.triage.store import Processed, TriageStore

log = logging.getLogger(__name__)

CE_SOURCE = "/fengqiao/triage"
# Upstream clocks drift and time zones get mislabelled; a day ahead is a mistake, not drift.
FUTURE_TOLERANCE = timedelta(days=1)


class Rejected(Exception):
    """A message that can never be processed: it goes to the dead-letter topic with this reason."""

    def __init__(self, reason: str, label: str):
        super().__init__(reason)
        self.reason = reason
        self.label = label


@dataclass(frozen=True)
class Accepted:
    """A valid input: the report to grade and why it is graded now."""

    record: Any
    event_id: str
    report: DisputeReported
    cause: str


def triaged_event_id(source_event_id: str, ruleset_version: str) -> str:
    """Derive the output id from the input id and ruleset version, so a redelivery repeats the same id."""
    digest = hashlib.sha256(f"{source_event_id}\x1f{ruleset_version}".encode()).hexdigest()
    return f"tri-{digest[:40]}"


def _label(error: ValidationError) -> str:
    # Bounded metric label: the top-level field and error type; unknown keys are attacker-chosen, so lumped.
    first = error.errors(include_url=False, include_input=False)[0]
    if first["type"] == "extra_forbidden":
        return "extra_field"
    field = str(first["loc"][0]) if first["loc"] else "message"
    known = field in DisputeReported.model_fields or field in ReassessmentRequested.model_fields
    return f"{field if known else 'message'}:{first['type']}"


def decode(record: Any, reassess_topic: str, max_bytes: int, latest: datetime) -> Accepted:
    """Validate one consumed record; raise Rejected naming the field when it is not a valid input.

    A report from after `latest` is refused: its correlation windows would reach into a future no
    other report can share, and it would sort after every real one.
    """
    value = record.value
    if not value:
        raise Rejected("message: empty", "message:empty")
    if reason := too_large(value, max_bytes):
        raise Rejected(reason, "message:too_large")
    try:
        if record.topic == reassess_topic:
            request = ReassessmentRequested.model_validate_json(value)
            accepted = Accepted(record, request.event_id, request.updated_report(), request.reason)
        else:
            report = DisputeReported.model_validate_json(value)
            accepted = Accepted(record, report.event_id, report, "reported")
    except ValidationError as error:
        raise Rejected(rejection_reason(error), _label(error)) from None
    if accepted.report.reported_at > latest:
        raise Rejected(f"reported_at: later than {latest.isoformat()}, the latest time accepted", "reported_at:future")
    return accepted


# The contract's bounds: a description full of risk words lists its first phrases, not all of them.
MAX_DETECTIONS = 64
MAX_PHRASE = 200


def triaged_event(
    accepted: Accepted, triage: Triage, version: str, now: Any, matter: tuple[str, ...] = (), detections: tuple[Detection, ...] = ()
) -> DisputeTriaged:
    """Build the output event of one graded report; `matter` names the earlier disputes of the same matter, `detections`
    the phrases that raised its detected flags."""
    return DisputeTriaged(
        event_id=triaged_event_id(accepted.event_id, version),
        dispute_id=accepted.report.dispute_id,
        source_event_id=accepted.event_id,
        cause=accepted.cause,
        level=triage.level,
        tier=triage.tier,
        urgency=triage.urgency,
        flags=triage.flags,
        matched_rules=triage.matched_rules,
        detections=[RiskDetection(flag=d.flag, pattern=d.pattern, phrase=d.phrase[:MAX_PHRASE]) for d in detections[:MAX_DETECTIONS]],
        ruleset_version=version,
        triaged_at=now,
        same_matter=list(matter) if accepted.cause == "reported" else [],
        report=accepted.report,
    )


class TriageProcessor:
    """Processes one consumed batch; raises only on transient failure, so the caller redelivers the batch."""

    def __init__(
        self,
        settings: TriageSettings,
        kafka: KafkaSettings,
        rules: Reloadable[Grader],
        store: TriageStore,
        publish: Callable[[list[Outgoing]], Awaitable[None]],
        clock: Clock,
        metrics: TriageMetrics,
        readiness: Readiness,
        writing: asyncio.Lock,
    ):
        self.settings = settings
        self.rules = rules
        self.store = store
        self.publish = publish
        self.clock = clock
        self.metrics = metrics
        self.readiness = readiness
        self.writing = writing  # the service's one writing lock, also taken to empty SQLite's log
        self.hasher = Hasher(settings.hmac_key_bytes())
        self.reassess_topic = kafka.topic(DISPUTES_REASSESS)
        self.triaged_topic = kafka.topic(DISPUTES_TRIAGED)
        self.invalid_topic = kafka.topic(DISPUTES_INVALID)

    async def _store(self, what: str, operation: Callable[[], Awaitable[Any]]) -> Any:
        return await retry_holding(self.writing, operation, what, self.readiness, self.metrics.store_retries.inc)

    async def process(self, records: Sequence[Any]) -> None:
        """Grade a batch and publish its outputs and dead letters; record what was done once all are acknowledged."""
        started = time.monotonic()
        grader = self.rules.current  # one version for the whole batch
        accepted, dead = self._decode(records)
        todo = await self._fresh(accepted)
        subjects = [subject_of(a.event_id, a.report, self.hasher, grader.ruleset.spec.correlation) for a in todo]
        correlated, matters = await self._correlate(subjects, grader)
        now = self.clock.now()
        done = [Processed(a.event_id, triaged_event_id(a.event_id, grader.version), now) for a in todo]
        sightings = [s for subject in subjects for s in subject.sightings()]
        # Written while the batch is graded and published, committed only once its outputs are acknowledged.
        async with written_beside(lambda released: self._store("store", lambda: self.store.record(done, sightings, released))):
            features = [Features.of_text(a.report.description, grader.ruleset, correlated[a.event_id], a.cause) for a in todo]
            graded = [(a, grader.grade(a.report, f)) for a, f in zip(todo, features)]
            events = [triaged_event(a, t, grader.version, now, matters[a.event_id], f.detections) for (a, t), f in zip(graded, features)]
            outgoing = [encode_event(self.triaged_topic, e, e.event_id, CE_SOURCE, now) for e in events] + dead
            await self.publish(outgoing)
            fault_point("after_publish", "reports")
        self._observe(graded, records, started)
        fault_point("after_record", "reports")

    def _decode(self, records: Sequence[Any]) -> tuple[list[Accepted], list[Outgoing]]:
        accepted, dead = [], []
        latest = self.clock.now() + FUTURE_TOLERANCE
        for record in records:
            try:
                accepted.append(decode(record, self.reassess_topic, self.settings.max_message_bytes, latest))
            except Rejected as rejected:
                self.metrics.invalid.labels(rejected.label).inc()
                dead.append(dead_letter(record, rejected.reason, self.invalid_topic, source=CE_SOURCE))
        return accepted, dead

    async def _fresh(self, accepted: list[Accepted]) -> list[Accepted]:
        seen_before = await self._store("store", lambda: self.store.already_processed([a.event_id for a in accepted]))
        fresh, ids = [], set(seen_before)
        for item in accepted:
            if item.event_id not in ids:
                ids.add(item.event_id)
                fresh.append(item)
        self.metrics.duplicates.inc(len(accepted) - len(fresh))
        return fresh

    async def _correlate(self, subjects: list[Subject], grader: Grader) -> tuple[dict[str, frozenset[str]], dict[str, tuple[str, ...]]]:
        spec = grader.ruleset.spec.correlation
        asked = probes(subjects, spec)
        stored = await self._store("store", lambda: self.store.other_disputes(asked)) if asked else {}
        matter = matter_probes(subjects, stored, spec)
        if matter:
            stored |= await self._store("store", lambda: self.store.same_matters(matter))
        return correlate(subjects, stored, spec), same_matter(subjects, stored, spec)

    def _observe(self, graded: list[tuple[Accepted, Triage]], records: Sequence[Any], started: float) -> None:
        acknowledged = time.time()
        # Counted per batch: a label lookup per report costs more than the grading it counts.
        outcomes = Counter((str(t.level), t.urgency, a.report.category, a.report.source) for a, t in graded)
        for labels, count in outcomes.items():
            self.metrics.triaged.labels(*labels).inc(count)
        for rule_id, count in Counter(rule.id for _, t in graded for rule in t.matched_rules).items():
            self.metrics.rule_matches.labels(rule_id).inc(count)
        for accepted, _ in graded:
            self.metrics.latency.observe(max(0.0, acknowledged - accepted.record.timestamp / 1000))
        self.metrics.batch_duration.observe(time.monotonic() - started)
        log.debug("batch of %d: %d graded", len(records), len(graded))
