"""`fengqiao run`: the whole loop 排查—上报—处置—反馈 on one machine, with simulated reporters, departments and revisit teams."""

import asyncio
import heapq
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from prometheus_client.parser import text_string_to_metric_families

from schemas.disputes import DISPUTES_REPORTED, DisputeReported
from schemas.followups import FOLLOWUP_MESSAGE, FollowupDue, due_topic, results_topic
from schemas.workorders import DEPARTMENT_MESSAGE, DEPARTMENTS, WorkOrderIssued, updates_topic, work_order_topic
from services.runtime.clock import SimulatedClock
from services.runtime.embedded import EmbeddedBroker, free_port
from services.runtime.kafka import client_options
from services.runtime.settings import KafkaSettings
from services.runtime.topics import contract_topics, ensure_topics
from services.simulator.behaviour import Behaviour, answer_revisit, plan_order
from services.simulator.observer import Observed, group_by_topic
from services.simulator.population import ReportFactory, reported_again, reported_elsewhere

SERVICES = ("triage", "dispatch", "followup")
DAY = 86400
STARTUP_SECONDS = 15
# Simulated days after the last report for its dispute to be resolved (most deadlines are 3 to 7 working days).
RESOLUTION_DAYS = 8
# Shares of reports that come again: through another platform under its own id (两网融一网), or under the same id.
CROSS_CHANNEL_SHARE = 0.08
REREPORT_SHARE = 0.04
# Wall seconds a run waits, once simulated time has stopped, for work in flight (a revisit that came due as the
# clock stopped, a late grading) to reach the topics; past it the report says what never arrived.
SETTLE_SECONDS = 30


@dataclass
class RunOptions:
    """What a run does: how many disputes over how many simulated days, on which Kafka."""

    disputes: int = 2000
    days: int = 30
    seconds_per_month: float = 60.0
    bootstrap: str | None = None
    seed: int = 7
    workdir: Path = Path("var/run")
    revisit_days: list[int] = field(default_factory=lambda: [7, 30])
    # Where to write every record of the run's topics, personal data included: for audits of what each topic carried.
    dump_topics: Path | None = None

    @property
    def speed(self) -> float:
        """Simulated seconds per real second: a month in `seconds_per_month`."""
        return 30 * DAY / self.seconds_per_month


class Scheduler:
    """Sends simulated actors' messages when the simulated clock reaches their time; those about a dropped order never go."""

    def __init__(self, clock: SimulatedClock, producer: AIOKafkaProducer):
        self.clock = clock
        self.producer = producer
        self._heap: list[tuple[datetime, int, str, bytes, bytes, str | None]] = []
        self._order = itertools.count()
        self._added = asyncio.Event()
        self._dropped: set[str] = set()

    def at(self, moment: datetime, topic: str, key: bytes, value: bytes, about: str | None = None) -> None:
        """Schedule one message; `about` names the work order it concerns, if any."""
        heapq.heappush(self._heap, (moment, next(self._order), topic, key, value, about))
        self._added.set()

    def drop(self, work_order_id: str) -> None:
        """Send nothing more about an order: it was cancelled, as a department's system would stop working it."""
        self._dropped.add(work_order_id)

    async def run(self) -> None:
        """Send what is due, then sleep until the next item or a new one."""
        while True:
            now, pending = self.clock.now(), []
            while self._heap and self._heap[0][0] <= now:
                _, _, topic, key, value, about = heapq.heappop(self._heap)
                if about is None or about not in self._dropped:
                    pending.append(await self.producer.send(topic, value, key=key))
            await asyncio.gather(*pending)
            self._added.clear()
            waits = [asyncio.ensure_future(self._added.wait())]
            if self._heap:
                waits.append(asyncio.ensure_future(self.clock.sleep_until(self._heap[0][0])))
            await asyncio.wait(waits, timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
            for waiting in waits:
                waiting.cancel()


class Stack:
    """The three service processes of a run, each with its own port, store and log."""

    def __init__(self, env: dict[str, str], workdir: Path, names: tuple[str, ...] = SERVICES):
        self.env = env
        self.workdir = workdir
        self.names = names
        self.ports = {name: free_port() for name in names}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        """Start triage, dispatch and follow-up as separate processes, as in production."""
        for name in self.names:
            log = (self.workdir / f"{name}.log").open("ab")
            env = os.environ | self.env | {f"{name.upper()}_HTTP_PORT": str(self.ports[name])}
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", "services.runtime", name], env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the run, which stops the services in order
            )

    def peak_rss_mb(self) -> dict[str, float]:
        """Return each running service's peak resident memory (VmHWM), in MB."""
        peaks = {name: self.memory_mb(name, "VmHWM") for name in self.processes}
        return {name: mb for name, mb in peaks.items() if mb is not None}

    def memory_mb(self, name: str, field: str = "VmRSS") -> float | None:
        """Return a field of a running service's memory status (VmRSS now, VmHWM at peak) in MB; None once it has exited."""
        process = self.processes[name]
        status = Path(f"/proc/{process.pid}/status")
        if process.poll() is not None or not status.exists():
            return None
        line = next(line for line in status.read_text().splitlines() if line.startswith(f"{field}:"))
        return round(int(line.split()[1]) / 1024, 1)

    def url(self, name: str, path: str = "/metrics") -> str:
        """Return a service's HTTP address."""
        return f"http://127.0.0.1:{self.ports[name]}{path}"

    def get(self, name: str, path: str) -> str | None:
        """GET a service path; None when it does not answer 200."""
        try:
            with urllib.request.urlopen(self.url(name, path), timeout=2) as response:
                return response.read().decode() if response.status == 200 else None
        except OSError:
            return None

    async def wait_ready(self, timeout: float = 90) -> None:
        """Wait until every service answers /health/ready."""
        deadline = time.monotonic() + timeout
        for name in self.names:
            while await asyncio.to_thread(self.get, name, "/health/ready") is None:
                if self.processes[name].poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not become ready; see {self.workdir / (name + '.log')}")
                await asyncio.sleep(0.2)

    async def wait_consuming(self, kafka: KafkaSettings, bootstrap: str, timeout: float = 60, members: int = 1) -> None:
        """Wait until every consumer group of the stack has joined with `members` members (a rebalance takes about 5 s)."""
        suffixes = {"triage": [""], "dispatch": [".triaged", ".updates"], "followup": [".events", ".results"]}
        groups = [f"{self.env[name.upper() + '_GROUP_ID']}{suffix}" for name in self.names for suffix in suffixes[name]]
        deadline = time.monotonic() + timeout
        for group in groups:
            while not await group_stable(kafka, bootstrap, group, members):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"consumer group {group} did not settle")
                await asyncio.sleep(0.5)

    def metrics(self) -> dict[str, dict[tuple[str, tuple], float]]:
        """Read every service's /metrics."""
        found = {}
        for name in self.names:
            samples = {}
            for family in text_string_to_metric_families(self.get(name, "/metrics") or ""):
                for sample in family.samples:
                    samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
            found[name] = samples
        return found

    def stop(self) -> None:
        """SIGTERM every service, newest first, and wait; kill what hangs. Leaves no stray process."""
        for name in reversed(self.names):
            process = self.processes.get(name)
            if process and process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def group_stable(kafka: KafkaSettings, bootstrap: str, group: str, members: int = 1) -> bool:
    """Tell whether a consumer group has settled with at least `members` members."""
    # One group per request, on a fresh client: the embedded broker drops the connection on some
    # multi-group or unknown-group requests.
    admin = AIOKafkaAdminClient(**client_options(kafka, bootstrap))
    await admin.start()
    try:
        [response] = await admin.describe_consumer_groups([group])
        return any(g[2] == "Stable" and len(g[5]) >= members for g in response.groups)
    except KafkaError:
        return False
    finally:
        await admin.close()


def _metric_sum(samples: dict, name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and all(dict(ls).get(k) == x for k, x in labels.items()))


class Simulation:
    """Reporters, departments and revisit teams around a running stack, with an observer of every topic."""

    def __init__(self, options: RunOptions, kafka: KafkaSettings, bootstrap: str, clock: SimulatedClock):
        self.options = options
        self.kafka = kafka
        self.bootstrap = bootstrap
        self.clock = clock
        self.rng = random.Random(options.seed)
        self.behaviour = Behaviour()
        self.observed = Observed()
        self.reported_all = asyncio.Event()
        self.run_id = uuid.uuid4().hex[:6]

    async def report(self, producer: AIOKafkaProducer, scheduler: Scheduler) -> None:
        """Publish the reports evenly over the simulated period; some quarrels come again through other channels."""
        factory = ReportFactory(self.rng, f"r{self.run_id}")
        start, step = self.clock.now(), timedelta(days=self.options.days) / self.options.disputes
        topic = self.kafka.topic(DISPUTES_REPORTED)
        for n in range(self.options.disputes):
            moment = start + step * n
            await self.clock.sleep_until(moment)
            report = factory.make(max(moment, self.clock.now()))
            await producer.send(topic, report.to_bytes(), key=report.dispute_id.encode())
            for again in self._reported_again(report, n):
                scheduler.at(again.reported_at, topic, again.dispute_id.encode(), again.to_bytes())
        await producer.flush()
        self.reported_all.set()

    def _reported_again(self, report: DisputeReported, n: int) -> list[DisputeReported]:
        # Hours later through another platform under its own id (about 8 %), or days later under the same id (about 4 %).
        found = []
        if self.rng.random() < CROSS_CHANNEL_SHARE:
            later = report.reported_at + timedelta(hours=self.rng.uniform(1, 6))
            found.append(reported_elsewhere(report, self.rng, later, f"r{self.run_id}-X{n:06d}"))
        if self.rng.random() < REREPORT_SHARE:
            found.append(reported_again(report, self.rng, report.reported_at + timedelta(days=self.rng.uniform(0.5, 2)), n))
        return found

    def _consumer(self, topics: list[str], group: str | None) -> AIOKafkaConsumer:
        options = client_options(self.kafka, self.bootstrap)
        consumer = AIOKafkaConsumer(*topics, **options, group_id=group, auto_offset_reset="earliest")
        return consumer

    async def departments(self, scheduler: Scheduler) -> None:
        """Act on every order as its department would."""
        topics = [self.kafka.topic(work_order_topic(d)) for d in DEPARTMENTS]
        consumer = self._consumer(topics, f"sim-departments-{self.run_id}")
        await consumer.start()
        try:
            async for record in consumer:
                message = DEPARTMENT_MESSAGE.validate_json(record.value)
                if isinstance(message, WorkOrderIssued):
                    for moment, update in plan_order(message, self.rng, self.behaviour):
                        # Each department writes its own topic, as its ACL allows in production.
                        topic = self.kafka.topic(updates_topic(message.department))
                        scheduler.at(moment, topic, message.dispute_id.encode(), update.to_bytes(), about=message.work_order_id)
                elif message.notice == "order_cancelled" or (message.notice == "update_answered" and message.outcome == "superseded"):
                    scheduler.drop(message.work_order_id)  # the order is gone: its planned updates would only be answered superseded
                # A case notice: the orders it names stand, so the plan for them does too; an applied answer changes no plan.
        finally:
            await consumer.stop()

    async def revisit_teams(self, scheduler: Scheduler) -> None:
        """Answer every revisit that comes due, as each department's team reads it off its own due topic."""
        # The department topics, not the shared feed: only they carry the parties the team must call.
        consumer = self._consumer([self.kafka.topic(due_topic(d)) for d in DEPARTMENTS], f"sim-revisits-{self.run_id}")
        await consumer.start()
        try:
            async for record in consumer:
                due = FOLLOWUP_MESSAGE.validate_json(record.value)
                if isinstance(due, FollowupDue) and due.kind == "revisit" and due.revisit_number == 1:
                    moment, result = answer_revisit(due, self.rng, self.behaviour)
                    # The revisit's department answers on its own topic: follow-up checks it against the timer's department.
                    scheduler.at(moment, self.kafka.topic(results_topic(due.department)), due.dispute_id.encode(), result.to_bytes())
        finally:
            await consumer.stop()

    async def observe(self) -> None:
        """Read every topic of the run into the observer, and into the dump file when one is asked for."""
        consumer = self._consumer([], None)
        await consumer.start()
        consumer.subscribe(pattern=f"^{self.kafka.topic_prefix.replace('.', '[.]')}(disputes|workorders|followups)[.].*")
        dump = self.options.dump_topics.open("w", encoding="utf-8") if self.options.dump_topics else None
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=200, max_records=5000)
                for topic, records in group_by_topic(self.kafka.topic_prefix, batch).items():
                    for record in records:
                        self.observed.take(topic, record)
                        if dump is not None:
                            dump.write(json.dumps({"topic": topic, "value": record.value.decode("utf-8", "replace")}, ensure_ascii=False) + "\n")
                if dump is not None:
                    dump.flush()
        finally:
            if dump is not None:
                dump.close()
            await consumer.stop()

    @property
    def revisit_cutoff(self) -> datetime:
        """Return the last resolution time whose first revisit comes due before simulated time stops."""
        return self.clock.until - timedelta(days=min(self.options.revisit_days))

    def stopped(self) -> bool:
        """Tell whether every report is out and simulated time has stopped."""
        return self.reported_all.is_set() and self.clock.now() >= self.clock.until

    def settled(self) -> bool:
        """Tell whether every report is graded, every graded dispute ordered and every revisit due by the end made."""
        seen = self.observed
        complete = len(seen.triaged) == len(seen.reported) >= self.options.disputes
        return self.stopped() and complete and not seen.disputes_without_orders() and not seen.unrevisited(self.revisit_cutoff)


async def run(options: RunOptions, show: Any) -> dict[str, Any]:
    """Run the loop end to end and return the report; `show(simulation, stack)` draws progress."""
    options.workdir.mkdir(parents=True, exist_ok=True)
    embedded = None if options.bootstrap else EmbeddedBroker()
    bootstrap = options.bootstrap or embedded.start()
    stack = None
    try:
        prefix = f"run-{uuid.uuid4().hex[:6]}." if options.bootstrap else ""
        kafka = KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=prefix)
        await ensure_topics(kafka, bootstrap, contract_topics(4))
        # Simulated time starts once the services have had time to start and join their groups.
        epoch = datetime.now(timezone.utc) + timedelta(seconds=STARTUP_SECONDS)
        # Time stops once the last reports could have been resolved and revisited, so the run ends at rest.
        until = epoch + timedelta(days=options.days + min(options.revisit_days) + RESOLUTION_DAYS)
        clock = SimulatedClock(epoch, options.speed, until=until)
        env = _environment(options, kafka, bootstrap, epoch, until)
        stack = Stack(env, options.workdir)
        stack.start()
        await stack.wait_ready()
        await stack.wait_consuming(kafka, bootstrap)
        await asyncio.sleep(max(0.0, (epoch - datetime.now(timezone.utc)).total_seconds()))
        simulation = Simulation(options, kafka, bootstrap, clock)
        report = await _simulate(simulation, stack, clock, show)
        # Where the statistics report reads from once the services stopped, and the simulated time it covers.
        report["data_dir"] = env["DISPATCH_DATA_DIR"]
        report["simulated_period"] = [epoch.isoformat(), clock.now().isoformat()]
        return report
    finally:
        if stack is not None:
            stack.stop()
        if embedded is not None:
            embedded.stop()


def _environment(options: RunOptions, kafka: KafkaSettings, bootstrap: str, epoch: datetime, until: datetime) -> dict[str, str]:
    run = uuid.uuid4().hex[:6]
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
        "FENGQIAO_CLOCK_SPEED": str(options.speed),
        "FENGQIAO_CLOCK_EPOCH": epoch.isoformat(),
        "FENGQIAO_CLOCK_UNTIL": until.isoformat(),
        "FOLLOWUP_REVISIT_DAYS": json.dumps(options.revisit_days),
        "FOLLOWUP_GAUGE_REFRESH_SECONDS": "0.2",
        "DISPATCH_GAUGE_REFRESH_SECONDS": "1",
    }
    for name in SERVICES:
        env[f"{name.upper()}_DATA_DIR"] = str(options.workdir / run)
        env[f"{name.upper()}_GROUP_ID"] = f"fengqiao-{name}-{run}"
    return env


async def _simulate(simulation: Simulation, stack: Stack, clock: SimulatedClock, show: Any) -> dict[str, Any]:
    producer = AIOKafkaProducer(**client_options(simulation.kafka, simulation.bootstrap), acks="all", linger_ms=5)
    await producer.start()
    scheduler = Scheduler(clock, producer)
    tasks = [
        asyncio.create_task(simulation.observe()),
        asyncio.create_task(scheduler.run()),
        asyncio.create_task(simulation.departments(scheduler)),
        asyncio.create_task(simulation.revisit_teams(scheduler)),
        asyncio.create_task(simulation.report(producer, scheduler)),
    ]
    started = clock.now()
    stopped_at = None
    try:
        while not simulation.settled():
            if stopped_at is None and simulation.stopped():
                stopped_at = time.monotonic()
            if stopped_at is not None and time.monotonic() - stopped_at > SETTLE_SECONDS:
                break  # what never arrived shows in the report
            for task in tasks:
                if task.done() and task.exception():
                    raise task.exception()
            show(simulation, stack)
            await asyncio.sleep(0.5)
        report = await _consistent_report(simulation, stack)
        show(simulation, stack)
        report["simulated_days"] = round((clock.now() - started).total_seconds() / DAY, 1)
        cutoff = simulation.revisit_cutoff
        report["resolved_in_time_for_a_revisit"] = sum(at <= cutoff for at in simulation.observed.resolved.values())
        unrevisited = simulation.observed.unrevisited(cutoff)
        report["resolved_without_revisit"] = len(unrevisited)
        report["disputes_resolved_without_revisit"] = sorted(unrevisited)
        report["metrics_urls"] = {name: stack.url(name) for name in SERVICES}
        for name in SERVICES:  # kept beside the logs: what each service exported when the run settled
            (stack.workdir / f"{name}.metrics").write_text(stack.get(name, "/metrics") or "", encoding="utf-8")
        return report
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await producer.stop()


async def _consistent_report(simulation: Simulation, stack: Stack) -> dict[str, Any]:
    """Take the topics' and the services' figures at a moment when no timer is firing, so they agree.

    Simulated time has stopped, so nothing new happens; the gauges are recounted every fraction of a
    second and the observer lags the broker by a poll: wait until both sides read the same.
    """
    for _ in range(60):
        await asyncio.sleep(0.5)
        metrics = _from_metrics(await asyncio.to_thread(stack.metrics))
        await asyncio.sleep(0.5)
        report = simulation.observed.summary()
        again = _from_metrics(await asyncio.to_thread(stack.metrics))
        fired = ("sla_warnings", "sla_breaches", "revisits_due")
        if metrics == again and all(report[k] == metrics[k] for k in fired) and report["orders"] == metrics["orders_issued"]:
            break
    report["metrics"] = metrics
    return report


def _from_metrics(metrics: dict) -> dict[str, Any]:
    triage, dispatch, followup = metrics["triage"], metrics["dispatch"], metrics["followup"]
    issued = _metric_sum(followup, "fengqiao_followup_orders_issued")
    resolved = _metric_sum(followup, "fengqiao_followup_orders_resolved")
    return {
        "triaged": _metric_sum(triage, "fengqiao_triage_triaged_total"),
        "triaged_by_level": {lvl: _metric_sum(triage, "fengqiao_triage_triaged_total", level=lvl) for lvl in ("1", "2", "3")},
        "orders_issued": _metric_sum(dispatch, "fengqiao_dispatch_orders_issued_total"),
        "closure_rate": round(resolved / issued, 4) if issued else 0.0,
        "mediation_success_rate": round(_metric_sum(followup, "fengqiao_followup_mediation_success_rate"), 4),
        "satisfaction_average": round(_metric_sum(followup, "fengqiao_followup_satisfaction_average"), 2),
        "sla_warnings": _metric_sum(followup, "fengqiao_followup_fired", kind="sla_warning"),
        "sla_breaches": _metric_sum(followup, "fengqiao_followup_fired", kind="sla_breached"),
        "revisits_due": _metric_sum(followup, "fengqiao_followup_fired", kind="revisit"),
        "rebounds": _metric_sum(followup, "fengqiao_followup_rebounds"),
        "escalations": {r: _metric_sum(dispatch, "fengqiao_dispatch_escalations_total", reason=r) for r in ("mediation_failed", "returned")},
    }
