"""Triage's batch pipeline in process: simulator reports in batches of 500 on a SQLite file, no broker.

`python -m bench.triage_inprocess [--reports N]` prints the rate, the CPU per report and a digest of every output
(value, key, headers) and of the rows stored: equal digests mean two versions published and stored the same bytes.
The reports are the same in every run (seeded, at fixed times), so digests compare across commits.
"""

import argparse
import asyncio
import gc
import hashlib
import random
import tempfile
import time
from datetime import datetime, timedelta, timezone

from aiokafka.structs import ConsumerRecord
from prometheus_client import CollectorRegistry

from schemas.disputes import DISPUTES_REPORTED
from services.runtime.clock import ManualClock
from services.runtime.kafka import Outgoing
from services.runtime.retry import Readiness
from services.runtime.service import tune_interpreter
from services.runtime.settings import KafkaSettings
from services.runtime.store import create_engine
from services.simulator.population import ReportFactory
from services.triage.app import rules_holder
from services.triage.handlers import TriageProcessor
from services.triage.metrics import TriageMetrics
from services.triage.ruleset import DEFAULT_RULES
from services.triage.settings import TriageSettings
from services.triage.store import TriageStore

NOW = datetime(2026, 11, 30, tzinfo=timezone.utc)
BATCH = 500


async def measure(count: int, folder: str) -> None:
    """Triage `count` reports as the service does (checkpoints off the loop, collector tuned) and print what it cost."""
    factory = ReportFactory(random.Random(1), "b1234")
    reports = [factory.make(NOW - timedelta(seconds=count - n)) for n in range(count)]
    records = [
        ConsumerRecord(DISPUTES_REPORTED, 0, n, 0, 0, r.dispute_id.encode(), r.to_bytes(), None, 0, 0, ())
        for n, r in enumerate(reports)
    ]
    settings = TriageSettings(hmac_key="k" * 32)
    engine = create_engine(f"sqlite+aiosqlite:///{folder}/triage.db", checkpoints_elsewhere=True, cache_mib=settings.sqlite_cache_mib)
    store, metrics, published = TriageStore(engine), TriageMetrics(CollectorRegistry()), []
    await store.create()

    async def publish(outgoing: list[Outgoing]) -> None:
        published.extend(outgoing)

    processor = TriageProcessor(
        settings, KafkaSettings(), rules_holder(DEFAULT_RULES.read_text(encoding="utf-8"), metrics),
        store, publish, ManualClock(NOW), metrics, Readiness(), asyncio.Lock(),
    )
    gc.collect()
    tune_interpreter()
    started, cpu = time.perf_counter(), time.process_time()
    for start in range(0, count, BATCH):
        await processor.process(records[start : start + BATCH])
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    outputs = hashlib.sha256()
    for o in published:
        outputs.update(repr((o.topic, o.key, o.value, o.headers)).encode())
    async with engine.connect() as connection:
        rows = hashlib.sha256()
        for table, order in (("triage_processed", "event_id"), ("triage_sightings", "kind, key_hash, dispute_id")):
            rows.update(repr((await connection.exec_driver_sql(f"SELECT * FROM {table} ORDER BY {order}")).all()).encode())
    await engine.dispose()
    print(f"{count} reports in {seconds:.2f} s: {count / seconds:,.0f}/s, {1e6 * cpu / count:.0f} us of CPU per report; "
          f"outputs {len(published)} digest {outputs.hexdigest()[:16]}, rows digest {rows.hexdigest()[:16]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reports", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(measure(args.reports, folder))


if __name__ == "__main__":
    main()
