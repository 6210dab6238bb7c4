"""Wiring of the triage service; nothing connects until the app starts.

Run with `fengqiao triage`, or `faststream run --factory services.triage.app:create_app`.
"""

from functools import partial
from typing import Any

from faststream.asgi import AsgiFastStream
from prometheus_client import CollectorRegistry

from schemas.disputes import DISPUTES_INVALID, DISPUTES_REASSESS, DISPUTES_REPORTED
from schemas.rules import RULES_TRIAGE
from services.runtime.clock import Clock, clock_from_settings
from services.runtime.poison import isolate_poison
from services.runtime.reload import Reloadable, watch_file
from services.runtime.service import batch_options, build_parts, decodable_headers, every, raw_records, service_app
from services.runtime.settings import ClockSettings, KafkaSettings
from services.triage.canary import ProvenGraders
from services.triage.grading import Grader
from services.triage.handlers import CE_SOURCE, TriageProcessor
from services.triage.metrics import TriageMetrics
from services.triage.settings import TriageSettings
from services.triage.signing import Signature, SignatureError, SignaturePolicy, from_headers, read_signed, sidecar_path
from services.triage.store import TriageStore

_PURGE_EVERY_SECONDS = 3600


def rules_holder(
    text: str, metrics: TriageMetrics, policy: SignaturePolicy = SignaturePolicy({}), signature: Signature | None = None
) -> Reloadable[Grader]:
    """Hold the grader of the ruleset in use, swappable at runtime only by a signed, newer version that passes the canary."""
    # Signature, version and limits are checked first: a refused text is never compiled, and compiles are never freed.
    return Reloadable(
        "ruleset",
        text,
        ProvenGraders(),
        lambda g: g.version,
        metrics.ruleset_active,
        metrics.ruleset_reloads,
        screen=policy.screen,
        proof=signature,
        reasons=True,
    )


def starting_rules(settings: TriageSettings, metrics: TriageMetrics, policy: SignaturePolicy) -> Reloadable[Grader]:
    """Hold the rules file's ruleset; refuse to start, naming the file and the fix, when its signature does not hold."""
    text, signature = read_signed(settings.rules_file)
    try:
        return rules_holder(text, metrics, policy, signature)
    except SignatureError as error:
        sidecar = sidecar_path(settings.rules_file)
        raise SignatureError(
            error.reason,
            f"rules file {settings.rules_file}: {error}; TRIAGE_RULES_PUBLIC_KEYS is set, so it must be signed by one of "
            f"those keys: run `fengqiao rules sign --key PRIVATE_KEY_FILE {settings.rules_file}` to write {sidecar}",
        ) from None


def create_app(
    settings: TriageSettings | None = None,
    kafka: KafkaSettings | None = None,
    clock: Clock | None = None,
    registry: CollectorRegistry | None = None,
) -> AsgiFastStream:
    """Build the triage application from settings."""
    settings = settings or TriageSettings()
    kafka = kafka or KafkaSettings()
    clock = clock or clock_from_settings(ClockSettings())
    registry = registry or CollectorRegistry()
    metrics = TriageMetrics(registry)
    parts = build_parts("triage", settings, kafka, registry)
    store = TriageStore(parts.engine)
    policy = settings.signature_policy()
    holder = starting_rules(settings, metrics, policy)
    processor = TriageProcessor(settings, kafka, holder, store, parts.publisher, clock, metrics, parts.readiness, parts.writing)

    @parts.broker.subscriber(
        kafka.topic(DISPUTES_REPORTED),
        kafka.topic(DISPUTES_REASSESS),
        group_id=settings.group_id,
        title="triage:reports",
        **batch_options(settings),
    )
    async def on_reports(records: Any) -> None:
        """Grade a batch of reports and reassessment requests; offsets commit after it returns."""
        await isolate_poison(records, processor.process, parts.publisher, kafka.topic(DISPUTES_INVALID), metrics.invalid.labels("unprocessable").inc, source=CE_SOURCE)

    # No group: every instance reads every version from the start of the compacted topic.
    @parts.broker.subscriber(kafka.topic(RULES_TRIAGE), auto_offset_reset="earliest", decoder=raw_records, parser=decodable_headers, title="triage:rules")
    async def on_ruleset(record: Any) -> None:
        """Offer a ruleset version published on the rules topic, with the signature its headers carry."""
        headers = {name: value.decode("utf-8", errors="replace") for name, value in record.headers or ()}
        holder.offer((record.value or b"").decode("utf-8", errors="replace"), "topic", from_headers(headers))

    async def purge() -> None:
        windows = holder.current.ruleset.spec.correlation
        widest = max(windows.repeat_parties.window_days, windows.group_wage_risk.window_days)
        async with parts.writing:
            await store.purge(clock.now(), settings.dedupe_days, widest)

    return service_app(
        parts,
        store.create,
        {
            "rules-file": partial(watch_file, holder, settings.rules_file, settings.rules_poll_seconds, read_signed),
            "purge": partial(every, _PURGE_EVERY_SECONDS, purge, "purge"),
        },
    )
