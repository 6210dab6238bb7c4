"""`make bench`: throughput of each service against a raw aiokafka loop on the same broker, end-to-end latency, memory.

One run, one machine, one broker (embedded unless --bootstrap names one), the same message sizes. Prints a table and writes
bench/results/latest.json. A benchmark, not a test: it asserts nothing, it measures.
"""

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from itertools import pairwise
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from schemas.disputes import DISPUTES_REPORTED, DISPUTES_TRIAGED
from schemas.followups import FOLLOWUPS_DUE
from schemas.workorders import WORKORDERS_EVENTS, OrderIssued
from services.runtime.embedded import EmbeddedBroker
from services.runtime.settings import KafkaSettings
from services.runtime.topics import TopicSpec, contract_topics, ensure_topics
from services.simulator.population import ReportFactory
from services.simulator.run import Stack
from services.triage.grading import Features, Grader
from services.dispatch import store as dispatch_store
from services.dispatch.routing import DEFAULT_ROUTING, assign, load_routing
from services.triage import store as triage_store
from services.triage.handlers import Accepted, triaged_event
from services.triage.ruleset import DEFAULT_RULES, load_ruleset

RESULTS = Path(__file__).parent / "results"
POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


def reports(count: int, seed: int = 1) -> list:
    factory = ReportFactory(random.Random(seed), f"b{uuid.uuid4().hex[:4]}")
    start = datetime.now(timezone.utc) - timedelta(seconds=count)  # one a second, ending now: triage refuses the future
    return [factory.make(start + timedelta(seconds=n)) for n in range(count)]


async def preload(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    try:
        for start in range(0, len(records), 5000):
            pending = [await producer.send(topic, value, key=key) for key, value in records[start : start + 5000]]
            await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def read_timestamps(bootstrap: str, topic: str, expected: int, timeout: float, stacks: list[Stack]) -> list[int]:
    """Read a topic from the start until `expected` records are there; return their broker timestamps.

    Raises if they are not all there in time, or once a service of `stacks` has exited: a stage then has no rate."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or {0}]
        consumer.assign(partitions)
        stamps: list[int] = []
        deadline = time.monotonic() + timeout
        while len(stamps) < expected:
            gone = [name for stack in stacks for name, process in stack.processes.items() if process.poll() is not None]
            if gone or time.monotonic() > deadline:
                why = f"{', '.join(gone)} exited (see its log in the bench's workdir)" if gone else f"not within {timeout:.0f} s"
                raise RuntimeError(f"{len(stamps)} of {expected} records on {topic}: {why}")
            for batch in (await consumer.getmany(timeout_ms=500, max_records=10000)).values():
                stamps.extend(r.timestamp for r in batch)
        return stamps
    finally:
        await consumer.stop()


def rate(stamps: list[int], count: int) -> float:
    """Events per second between the first and the last output (broker append times)."""
    span = (max(stamps) - min(stamps)) / 1000 if len(stamps) > 1 else 0
    return round(count / span, 1) if span else 0.0


async def baseline(bootstrap: str, count: int, values: list[tuple[bytes, bytes]]) -> float:
    """The raw aiokafka loop: consume a batch, parse JSON, produce, await the batch, commit."""
    source, sink = f"bench-{uuid.uuid4().hex[:6]}-in", f"bench-{uuid.uuid4().hex[:6]}-out"
    await ensure_topics(KafkaSettings(), bootstrap, [TopicSpec(source, 4), TopicSpec(sink, 4)])
    await preload(bootstrap, source, values)
    consumer = AIOKafkaConsumer(source, bootstrap_servers=bootstrap, group_id=f"{source}-g", enable_auto_commit=False, auto_offset_reset="earliest")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await consumer.start()
    await producer.start()
    try:
        done, started = 0, None
        while done < count:
            batches = await consumer.getmany(timeout_ms=200, max_records=500)
            records = [r for batch in batches.values() for r in batch]
            if not records:
                continue
            started = started or time.perf_counter()
            pending = [await producer.send(sink, json.dumps(json.loads(r.value)).encode(), key=r.key) for r in records]
            await asyncio.gather(*pending)
            await consumer.commit()
            done += len(records)
        return round(count / (time.perf_counter() - started), 1)
    finally:
        await consumer.stop()
        await producer.stop()


async def drop_tables(url: str, *tables: str) -> None:
    """Start a service on PostgreSQL from an empty schema."""
    import asyncpg

    connection = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        # One statement, so tables that refer to each other go together.
        await connection.execute(f"DROP TABLE IF EXISTS {', '.join(tables)}")
    finally:
        await connection.close()


# Every table a service's store has, so a run on a database used before starts from an empty schema.
TRIAGE_TABLES = tuple(triage_store.metadata.tables)
DISPATCH_TABLES = (*dispatch_store.metadata.tables, "dispatch_alembic_version")


def service_env(bootstrap: str, prefix: str, workdir: Path, database_url: str | None = None) -> dict[str, str]:
    env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "KAFKA_TOPIC_PREFIX": prefix, "TRIAGE_HMAC_KEY": "bench-key-0123456789abcdef", "TRIAGE_LOG_LEVEL": "WARNING",
           "DISPATCH_LOG_LEVEL": "WARNING", "FOLLOWUP_LOG_LEVEL": "WARNING"}
    for name in ("triage", "dispatch", "followup"):
        env[f"{name.upper()}_DATA_DIR"] = str(workdir / prefix.strip("."))
        env[f"{name.upper()}_GROUP_ID"] = f"{prefix}{name}"
    if database_url:
        env["DATABASE_URL"] = database_url
    return env


async def one_service(name: str, bootstrap: str, workdir: Path, load, output_topic: str, expected, database_url: str | None = None):
    """Pre-load a service's input, start it alone, and time its output."""
    prefix = f"b{uuid.uuid4().hex[:6]}."
    kafka = KafkaSettings(topic_prefix=prefix)
    await ensure_topics(kafka, bootstrap, contract_topics(4))
    count = await load(bootstrap, kafka)
    stack = Stack(service_env(bootstrap, prefix, workdir, database_url), workdir, (name,))
    stack.start()
    try:
        stamps = await read_timestamps(bootstrap, kafka.topic(output_topic), expected(count), 600, [stack])
        return rate(stamps, count), len(stamps), stack.peak_rss_mb().get(name, 0.0)
    finally:
        stack.stop()


async def triage_instances(instances: int, bootstrap: str, workdir: Path, wire: list[tuple[bytes, bytes]], database_url: str):
    """Start `instances` triage processes in one group on a shared PostgreSQL store, wait until each owns
    partitions, then load the reports and time their output."""
    await drop_tables(database_url, *TRIAGE_TABLES)
    prefix = f"b{uuid.uuid4().hex[:6]}."
    kafka = KafkaSettings(topic_prefix=prefix)
    await ensure_topics(kafka, bootstrap, contract_topics(4))
    env = service_env(bootstrap, prefix, workdir, database_url)
    stacks = [Stack(env, workdir, ("triage",)) for _ in range(instances)]
    for stack in stacks:
        stack.start()
    try:
        for stack in stacks:
            await stack.wait_ready()
        await stacks[0].wait_consuming(kafka, bootstrap, members=instances)
        await preload(bootstrap, kafka.topic(DISPUTES_REPORTED), wire)
        stamps = await read_timestamps(bootstrap, kafka.topic(DISPUTES_TRIAGED), len(wire), 600, stacks)
        return rate(stamps, len(wire)), len(stamps), max(s.peak_rss_mb().get("triage", 0.0) for s in stacks)
    finally:
        for stack in stacks:
            stack.stop()


async def soak(bootstrap: str, workdir: Path, sample: list, events: int) -> dict:
    """Feed distinct reports through the whole stack until each service has consumed `events` records,
    sampling each one's memory: it must stay flat."""
    prefix, partitions = f"b{uuid.uuid4().hex[:6]}.", 4
    kafka = KafkaSettings(topic_prefix=prefix)
    await ensure_topics(kafka, bootstrap, contract_topics(partitions))
    stack = Stack(service_env(bootstrap, prefix, workdir), workdir)
    stack.start()
    env = stack.env
    groups = {"triage": (env["TRIAGE_GROUP_ID"], kafka.topic(DISPUTES_REPORTED)),
              "dispatch": (f"{env['DISPATCH_GROUP_ID']}.triaged", kafka.topic(DISPUTES_TRIAGED)),
              "followup": (f"{env['FOLLOWUP_GROUP_ID']}.events", kafka.topic(WORKORDERS_EVENTS))}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await stack.wait_ready()
        await stack.wait_consuming(kafka, bootstrap)
        started, samples = time.monotonic(), []

        async def take_sample() -> dict[str, int]:
            consumed = await committed(admin, groups, partitions)
            samples.append({"seconds": round(time.monotonic() - started), "consumed": consumed,
                            "rss_mb": {name: stack.memory_mb(name) for name in groups}})
            return consumed

        for start in range(0, events, len(sample)):
            # A bounded backlog ahead of the slowest service: the broker keeps every record in memory.
            while start - (await take_sample())["dispatch"] > 2 * len(sample):
                await asyncio.sleep(5)
            copies = [r.model_copy(update={"event_id": f"{r.event_id}-s{start}", "dispute_id": f"{r.dispute_id}-s{start}"}) for r in sample[: events - start]]
            await preload(bootstrap, kafka.topic(DISPUTES_REPORTED), [(r.dispute_id.encode(), r.to_bytes()) for r in copies])
        deadline = time.monotonic() + 3600
        # Follow-up gets ~3 work-order events a report: it has seen its 1,000,000 before dispatch has.
        while min((await take_sample()).values()) < events and time.monotonic() < deadline:
            await asyncio.sleep(5)
        peaks = stack.peak_rss_mb()
        return {"events": events, "seconds": samples[-1]["seconds"], "samples": samples,
                "services": {name: memory_over(samples, name) | {"peak_rss_mb": peaks.get(name, 0.0)} for name in groups}}
    finally:
        await admin.close()
        stack.stop()


def memory_over(samples: list[dict], name: str) -> dict:
    """Return a service's RSS once it had consumed a tenth of its input, and at the end."""
    total = samples[-1]["consumed"][name]
    first = next(s for s in samples if s["consumed"][name] >= total / 10)
    return {"consumed": total, "rss_mb_at_10_percent": first["rss_mb"][name], "rss_mb_at_end": samples[-1]["rss_mb"][name]}


async def committed(admin: AIOKafkaAdminClient, groups: dict[str, tuple[str, str]], partitions: int) -> dict[str, int]:
    """Return how many records each service's consumer group has committed in the topic it consumes."""
    found = {}
    for name, (group, topic) in groups.items():
        # Partitions named: the embedded broker drops the connection when asked for all of a group's.
        offsets = await admin.list_consumer_group_offsets(group, partitions=[TopicPartition(topic, p) for p in range(partitions)])
        found[name] = sum(max(0, meta.offset) for meta in offsets.values())
    return found


STAGES = ("triage", "scaleout", "dispatch_sqlite", "dispatch_postgres", "followup", "end_to_end", "soak")


@contextmanager
def broker_at(bootstrap: str | None):
    """Yield the broker's address and process id: the one named (pid None), or an embedded one for the run."""
    if bootstrap:
        yield bootstrap, None
        return
    with EmbeddedBroker() as broker:
        yield broker.bootstrap_servers, broker.pid


async def run(args: argparse.Namespace) -> dict:
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict = {"machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
                     "events": args.events, "started": datetime.now(timezone.utc).isoformat()}
    sample = reports(args.events)
    wire = [(r.dispute_id.encode(), r.to_bytes()) for r in sample]
    results["message_bytes"] = round(statistics.mean(len(v) for _, v in wire))
    with broker_at(args.bootstrap) as (bootstrap, broker_pid):
        results["baseline"] = await baseline(bootstrap, args.events, wire)

        async def load_reports(bootstrap, kafka):
            await preload(bootstrap, kafka.topic(DISPUTES_REPORTED), wire)
            return len(wire)

        if "triage" in args.only:
            results["triage"] = await one_service("triage", bootstrap, workdir, load_reports, DISPUTES_TRIAGED, lambda n: n)
        if "scaleout" in args.only:
            results["triage_postgres_1"] = await triage_instances(1, bootstrap, workdir, wire, POSTGRES_URL)
            results["triage_postgres_2"] = await triage_instances(2, bootstrap, workdir, wire, POSTGRES_URL)

        grader = Grader(load_ruleset(DEFAULT_RULES))
        now = datetime.now(timezone.utc)
        triaged = []
        for report in sample:
            accepted = Accepted(None, report.event_id, report, "reported")
            grade = grader.grade(report, Features.of_text(report.description, grader.ruleset))
            triaged.append(triaged_event(accepted, grade, grader.version, now))

        async def load_triaged(bootstrap, kafka):
            await preload(bootstrap, kafka.topic(DISPUTES_TRIAGED), [(t.dispute_id.encode(), t.to_bytes()) for t in triaged])
            return len(triaged)

        table = load_routing(DEFAULT_ROUTING)
        issued_total = sum(len(assign(t, table)) for t in triaged)
        for label, url in (("dispatch_sqlite", None), ("dispatch_postgres", POSTGRES_URL)):
            if label not in args.only:
                continue
            if url:
                await drop_tables(url, *DISPATCH_TABLES)
            results[label] = await one_service("dispatch", bootstrap, workdir, load_triaged, WORKORDERS_EVENTS, lambda n: issued_total, url)

        timers = args.timers // 2
        due = datetime.now(timezone.utc) - timedelta(minutes=1)  # every timer is due when the service starts

        async def load_orders(bootstrap, kafka):
            events = []
            for n in range(timers):
                report = sample[n % len(sample)]
                event = OrderIssued(
                    event_id=f"bench-issued-{n}", dispute_id=report.dispute_id, attempt=1, at=due - timedelta(hours=1),
                    work_order_id=f"bench-wo-{n}", department="community_police", role="support", level=1, urgency="routine",
                    issued_at=due - timedelta(hours=1), due_at=due, report=report,
                )
                events.append((report.dispute_id.encode(), event.to_bytes()))
            await preload(bootstrap, kafka.topic(WORKORDERS_EVENTS), events)
            return timers * 2

        if "followup" in args.only:
            results["followup_timers"] = await one_service("followup", bootstrap, workdir, load_orders, FOLLOWUPS_DUE, lambda n: n)
        if "end_to_end" in args.only:
            # The first linger is the headline; the others show how much of it is the broker's cost per stored batch.
            results["end_to_end"] = [await end_to_end(bootstrap, broker_pid, workdir, args.rate, args.seconds, args.e2e_partitions, linger)
                                     for linger in args.upstream_linger_ms]
        if "soak" in args.only:
            results["soak"] = await soak(bootstrap, workdir, sample, args.soak_events)
    for key in THROUGHPUTS:
        if key in results:
            throughput, outputs, rss = results[key]
            results[key] = {"per_second": throughput, "outputs": outputs, "ratio_to_baseline": round(throughput / results["baseline"], 3), "peak_rss_mb": rss}
    return results


THROUGHPUTS = {
    "triage": "triage alone",
    "triage_postgres_1": "triage, PostgreSQL store, 1 instance",
    "triage_postgres_2": "triage, PostgreSQL store, 2 instances in one group",
    "dispatch_sqlite": "dispatch alone, SQLite (disputes)",
    "dispatch_postgres": "dispatch alone, PostgreSQL (disputes)",
    "followup_timers": "follow-up: schedule and fire timers",
}


def cpu_seconds(pid: int) -> float:
    """Return the CPU time a process has used (user + system), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_reading(pids: dict[str, int]) -> tuple[float, dict[str, float]]:
    """Return the time now and the CPU seconds each named process has used."""
    return time.perf_counter(), {name: cpu_seconds(pid) for name, pid in pids.items()}


def cpu_share(before: tuple[float, dict[str, float]], after: tuple[float, dict[str, float]]) -> dict[str, int]:
    """Return each process's share of one core between two readings, in per cent."""
    elapsed = after[0] - before[0]
    return {name: round(100 * (after[1][name] - used) / elapsed) for name, used in before[1].items()}


def percentile(values: list[float], cut: int) -> float:
    """Return the `cut`th percentile of the values."""
    return statistics.quantiles(values, n=100, method="inclusive")[cut - 1]


async def end_to_end(bootstrap: str, broker_pid: int | None, workdir: Path, per_second: int, seconds: int, partitions: int, linger_ms: int) -> dict:
    """Offer a fixed load to the whole stack; latency is report handed to the producer -> first order appended."""
    prefix = f"b{uuid.uuid4().hex[:6]}."
    kafka = KafkaSettings(topic_prefix=prefix)
    await ensure_topics(kafka, bootstrap, contract_topics(partitions))
    stack = Stack(service_env(bootstrap, prefix, workdir), workdir)
    stack.start()
    try:
        await stack.wait_ready()
        await stack.wait_consuming(kafka, bootstrap)
        sample = reports(per_second * seconds, seed=2)
        wire = [(report.dispute_id.encode(), report.to_bytes()) for report in sample]  # encoded before the clock starts
        # Upstream platforms batch like any Kafka producer; the linger sets how many record batches the broker stores.
        # Each report's time is taken when it is handed to the producer, so the linger counts in the latency.
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=linger_ms)
        await producer.start()
        pids = {name: process.pid for name, process in stack.processes.items()} | {"generator": os.getpid()}
        if broker_pid:  # a broker named by --bootstrap may not even run on this machine
            pids["broker"] = broker_pid
        window = per_second * 10
        readings, started = [], time.perf_counter()  # (time, CPU seconds of each process) every 10 s of load
        acknowledged: dict[str, asyncio.Future] = {}
        for n, (key, value) in enumerate(wire):
            if n % window == 0:
                readings.append(cpu_reading(pids))
            await asyncio.sleep(max(0.0, started + n / per_second - time.perf_counter()))
            # Not awaited one by one: the offered rate must not depend on the broker's round trip.
            acknowledged[key.decode()] = await producer.send(kafka.topic(DISPUTES_REPORTED), value, key=key)
        appended = {dispute: await future for dispute, future in acknowledged.items()}
        sent = {dispute: metadata.timestamp for dispute, metadata in appended.items()}
        readings.append(cpu_reading(pids))
        await producer.stop()
        first_order = await first_orders(bootstrap, kafka.topic(WORKORDERS_EVENTS), len(sample))
        latencies = [first_order[d] - sent[d] for d in sent if d in first_order]  # in the order offered
        return {"offered_per_second": per_second, "seconds": seconds, "partitions": partitions, "upstream_linger_ms": linger_ms,
                "measured": len(latencies),
                "p50_ms": percentile(latencies, 50), "p95_ms": percentile(latencies, 95), "p99_ms": percentile(latencies, 99),
                "p99_ms_per_10_s": [round(percentile(latencies[i:i + window], 99)) for i in range(0, len(latencies) - window + 1, window)],
                "p99_ms_per_partition": p99_by_partition(first_order, sent, {d: m.partition for d, m in appended.items()}),
                "cpu_percent": cpu_share(readings[0], readings[-1]),
                "cpu_percent_per_10_s": [cpu_share(before, after) for before, after in pairwise(readings)],
                "peak_rss_mb": stack.peak_rss_mb()}
    finally:
        stack.stop()


def p99_by_partition(first_order: dict[str, int], sent: dict[str, int], partition: dict[str, int]) -> dict[int, int]:
    """Return the p99 latency of the reports appended to each partition."""
    latencies: dict[int, list[int]] = {}
    for dispute, at in sent.items():
        if dispute in first_order:
            latencies.setdefault(partition[dispute], []).append(first_order[dispute] - at)
    return {p: round(percentile(values, 99)) for p, values in sorted(latencies.items())}


async def first_orders(bootstrap: str, topic: str, disputes: int) -> dict[str, int]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    found: dict[str, int] = {}
    try:
        deadline = time.monotonic() + 120
        while len(found) < disputes and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=500, max_records=10000)).values():
                for record in batch:
                    found.setdefault(record.key.decode(), record.timestamp)
        return found
    finally:
        await consumer.stop()


def table(results: dict) -> str:
    lines = [f"machine: {results['machine']}; {results['events']} events of ~{results['message_bytes']} bytes", "",
             "| measurement | per second | × baseline | peak RSS MB |", "|---|---:|---:|---:|",
             f"| baseline: raw aiokafka consume→parse→produce→commit | {results['baseline']:,.0f} | 1.00 | |"]
    for key, label in THROUGHPUTS.items():
        if key in results:
            r = results[key]
            lines.append(f"| {label} | {r['per_second']:,.0f} | {r['ratio_to_baseline']:.2f} | {r['peak_rss_mb']} |")
    for e in results.get("end_to_end", []):
        lines += ["", f"end to end at {e['offered_per_second']} reports/s for {e['seconds']} s on {e['partitions']}-partition topics, "
                  f"upstream producer lingering {e['upstream_linger_ms']} ms (report → first order, {e['measured']} disputes): "
                  f"p50 {e['p50_ms']:.0f} ms, p95 {e['p95_ms']:.0f} ms, p99 {e['p99_ms']:.0f} ms; peak RSS MB {e['peak_rss_mb']}",
                  f"p99 of each 10 s of reports offered: {', '.join(f'{p} ms' for p in e['p99_ms_per_10_s'])}",
                  f"p99 by the report's partition: {', '.join(f'{p}: {ms} ms' for p, ms in e['p99_ms_per_partition'].items())}",
                  f"% of a core used while the load was offered: {', '.join(f'{name} {share}' for name, share in e['cpu_percent'].items())}",
                  "the same for each 10 s: " + ", ".join(f"{name} {'/'.join(str(w[name]) for w in e['cpu_percent_per_10_s'])}" for name in e["cpu_percent"])]
    if "soak" in results:
        s = results["soak"]
        lines += ["", f"memory while each service of the whole stack consumed {s['events']:,} records ({s['seconds']} s):"]
        for name, m in s["services"].items():
            lines.append(f"- {name}, {m['consumed']:,} records consumed: RSS {m['rss_mb_at_10_percent']} MB at 10 %, {m['rss_mb_at_end']} MB at the end, peak {m['peak_rss_mb']} MB")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--timers", type=int, default=100_000)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--seconds", type=int, default=60)
    # The contract layout's 4 by default; the embedded broker's fetch cost depends on it (README, its limits).
    parser.add_argument("--e2e-partitions", type=int, default=4, help="Partitions of each topic in the end-to-end stage")
    parser.add_argument("--upstream-linger-ms", type=int, nargs="+", default=[5, 50],
                        help="The report producer's linger in the end-to-end stage, one run each; the first (Kafka 4's default) is the headline")
    parser.add_argument("--soak-events", type=int, default=1_000_000)
    parser.add_argument("--workdir", default="var/bench")
    parser.add_argument("--bootstrap", help="host:port of a running Kafka-protocol broker to measure on "
                        "(e.g. Apache Kafka) instead of the embedded one")
    parser.add_argument("--only", nargs="*", choices=STAGES, default=list(STAGES), help="Measure only these (the baseline always runs)")
    args = parser.parse_args()
    results = asyncio.run(run(args))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
    print(table(results))


if __name__ == "__main__":
    main()
