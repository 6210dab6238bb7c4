"""A record only a later layer refuses stops nothing: its batch is split down to it, and it alone is dead-lettered.

The rules below are valid, yet a report with 1,000 parties matches 70 flag rules and its graded event would carry 70
flags, more than the contract's 64: building the output fails for that report only, on every redelivery.
"""

import json

import pytest
from pydantic import ValidationError

from services.runtime.poison import isolate_poison
from services.runtime.reload import Reloadable
from services.triage.grading import Grader
from services.triage.ruleset import DEFAULT_RULES, parse_ruleset
from tests.support.pipelines import Record, triage_pipeline
from tests.support.samples import FLAG_RULES, report_payload

RULES = DEFAULT_RULES.read_text(encoding="utf-8").replace('version: "2026.11.1"', 'version: "2026.11.70"') + FLAG_RULES + "\n"


def report(n: int, party_count: int = 2) -> Record:
    payload = report_payload(event_id=f"evt-{n}", dispute_id=f"D-{n}", party_count=party_count)
    return Record("disputes.reported", json.dumps(payload).encode(), key=f"D-{n}".encode(), offset=n)


@pytest.fixture
async def pipeline(database_url):
    processor, published, engine = await triage_pipeline(database_url)
    # The canary refuses these rules; served anyway, they stand for a version whose flaw no sample showed.
    processor.rules = Reloadable(
        "ruleset", RULES, lambda t: Grader(parse_ruleset(t)), lambda g: g.version, processor.metrics.ruleset_active, processor.metrics.ruleset_reloads
    )
    yield processor, published
    await engine.dispose()


async def test_a_record_the_engine_cannot_grade_is_dead_lettered_alone_and_its_neighbours_graded(pipeline):
    processor, published = pipeline
    batch = [report(n, party_count=1000 if n == 5 else 2) for n in range(10)]
    with pytest.raises(ValidationError):
        await processor.process(batch)  # alone, the pipeline fails the whole batch: every redelivery again

    await isolate_poison(batch, processor.process, published, "disputes.invalid", processor.metrics.invalid.labels("unprocessable").inc, source="/fengqiao/triage")
    assert sorted(e.source_event_id for e in published.triaged()) == sorted(f"evt-{n}" for n in range(10) if n != 5)
    [dead] = published.dead()
    assert (dead.header("dlq_reason"), dead.header("dlq_source_offset"), dead.value) == ("unprocessable: ValidationError", "5", batch[5].value)

    # Redelivered: the graded reports are repeats, the poison is dead-lettered again with the same bytes.
    first = list(published)
    published.clear()
    await isolate_poison(batch, processor.process, published, "disputes.invalid", processor.metrics.invalid.labels("unprocessable").inc, source="/fengqiao/triage")
    assert published.triaged() == [] and [(o.value, o.headers) for o in published] == [(dead.value, dead.headers)]
    assert first.count(dead) == 1
