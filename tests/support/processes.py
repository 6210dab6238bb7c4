"""Run a service as a real process, as in production, and read topics the way a downstream system would."""

import asyncio
import os
import signal
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from services.runtime.settings import RetrySettings
from services.simulator.run import group_stable
from tests.support.conditions import wait_for

# What the tests shrink, each to what its mechanism needs. A group's join waits about half the session
# timeout, and a killed member holds its partitions that long (5 s and 10 s at the default).
SESSION_TIMEOUT_MS = 3000
# An outage proves the service rides it out once it outlasts several retry schedules (6.2 s by default):
# each one hands the batch back for redelivery.
RETRY = RetrySettings(attempts=4, first_delay_seconds=0.05)
OUTAGE_SECONDS = max(5.0, 10 * RETRY.schedule_seconds())
TEST_ENVIRONMENT = {
    **{f"{service}_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS) for service in ("TRIAGE", "DISPATCH", "FOLLOWUP")},
    "FENGQIAO_RETRY_ATTEMPTS": str(RETRY.attempts),
    "FENGQIAO_RETRY_FIRST_DELAY_SECONDS": str(RETRY.first_delay_seconds),
}


class ServiceProcess:
    """One `fengqiao <service>` process with its own environment and log file."""

    def __init__(self, service: str, env: dict[str, str], http_port: int, log_path: Path):
        self.service = service
        self.env = env
        self.http_port = http_port
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> "ServiceProcess":
        """Start the process; its output goes to the log file."""
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.runtime", self.service],
            env=os.environ | TEST_ENVIRONMENT | self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def _get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=2) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        except OSError:
            return 0, ""

    async def get(self, path: str) -> tuple[int, str]:
        """GET a path of the service's HTTP port; status 0 when nothing answers."""
        return await asyncio.to_thread(self._get, path)

    async def wait_ready(self, timeout: float = 60) -> None:
        """Wait until /health/ready answers 200."""

        async def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.service} exited with {self.process.returncode}:\n{self.log_tail()}")
            return (await self.get("/health/ready"))[0] == 200

        await wait_for(ready, timeout)

    async def wait_for(self, condition, timeout: float) -> None:
        """Wait for `condition`, showing the service's log when it does not come."""
        try:
            await wait_for(condition, timeout)
        except AssertionError as error:
            raise AssertionError(f"{error}; {self.service} log:\n{self.log_tail()}") from None

    async def metric(self, line_prefix: str) -> float:
        """Return the value of the first /metrics line starting with `line_prefix` (0 when absent)."""
        _, text = await self.get("/metrics")
        for line in text.splitlines():
            if line.startswith(line_prefix):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no final commit."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM and wait; kill if it hangs."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(f"{self.service} did not stop on SIGTERM:\n{self.log_tail()}") from None

    def log_tail(self, lines: int = 40) -> str:
        """Return the end of the process's log."""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


async def ride_out(service: ServiceProcess, retries_metric: str, schedules: int = 3) -> None:
    """Wait, while a store is gone, until the service has used up `schedules` retry schedules, each handing its batch back."""
    needed = await service.metric(retries_metric) + schedules * (RETRY.attempts - 1)

    async def retried() -> bool:
        return await service.metric(retries_metric) >= needed

    await service.wait_for(retried, 60)


def services_env(bootstrap: str, topic_prefix: str, data_dir: Path, *services: str) -> dict[str, str]:
    """Return the environment of a test's services: its broker and topics, a fresh group and a data directory each."""
    run = uuid.uuid4().hex[:8]
    env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "KAFKA_TOPIC_PREFIX": topic_prefix}
    for service in services:
        env |= {f"{service.upper()}_GROUP_ID": f"{service}-{run}", f"{service.upper()}_DATA_DIR": str(data_dir / service)}
    return env


def start_service(service: str, env: dict[str, str], log_dir: Path) -> ServiceProcess:
    """Start `fengqiao <service>` on a free HTTP port."""
    from services.runtime.embedded import free_port

    port = free_port()
    env = env | {f"{service.upper()}_HTTP_PORT": str(port)}
    return ServiceProcess(service, env, port, log_dir / f"{service}.log").start()


def _connection(bootstrap: str, tls: ssl.SSLContext | None) -> dict[str, object]:
    """Return a test client's connection options: plaintext, or TLS verified by the `tls` context."""
    return {"bootstrap_servers": bootstrap} | ({"security_protocol": "SSL", "ssl_context": tls} if tls else {})


async def produce(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]], tls: ssl.SSLContext | None = None) -> None:
    """Send (key, value) pairs, awaiting all acknowledgements together; over TLS when given a context."""
    producer = AIOKafkaProducer(**_connection(bootstrap, tls), acks="all")
    await producer.start()
    try:
        pending = [await producer.send(topic, value, key=key) for key, value in messages]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def read_all(bootstrap: str, topics: list[str], tls: ssl.SSLContext | None = None) -> list:
    """Read every record now in the topics, from the beginning to the current end, without a group; over TLS when given a context."""
    # Short waits: an empty partition answers only with the high watermark `_at_end` reads, and tests poll
    # this in their waits (with the client's 500 ms, each read of the 20 department topics took a second).
    consumer = AIOKafkaConsumer(
        **_connection(bootstrap, tls), enable_auto_commit=False, auto_offset_reset="earliest", fetch_max_wait_ms=20
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(t, p) for t in topics for p in await _partitions(consumer, t)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        records = []
        while not await _at_end(consumer, partitions):
            for batch in (await consumer.getmany(timeout_ms=50)).values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


async def _at_end(consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> bool:
    # The end is the high watermark of the fetch responses: the embedded broker's ListOffsets
    # (`end_offsets`) answers the base offset of the last record batch, short of the end.
    for tp in partitions:
        if consumer.highwater(tp) is None or await consumer.position(tp) < consumer.highwater(tp):
            return False
    return True


async def end_offsets(bootstrap: str, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
    """Return where each partition ends now, read from fetch responses rather than ListOffsets."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest", fetch_max_wait_ms=20)
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        async with asyncio.timeout(30):
            while any(consumer.highwater(tp) is None for tp in partitions):
                await consumer.getmany(timeout_ms=200, max_records=1)
        return {tp: consumer.highwater(tp) for tp in partitions}
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()
    return consumer.partitions_for_topic(topic) or set()


async def wait_until_committed(bootstrap: str, group_id: str, topics: list[str], timeout: float = 60) -> None:
    """Wait until the group has committed every partition of the topics up to its current end."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(t, p) for t in topics for p in await _partitions(consumer, t)]
        ends = await end_offsets(bootstrap, partitions)

        async def committed() -> bool:
            for tp in partitions:
                if ends[tp] and (await consumer.committed(tp) or 0) < ends[tp]:
                    return False
            return True

        await wait_for(committed, timeout, every=0.2)
    finally:
        await consumer.stop()


async def wait_until_rejoined(settings, bootstrap: str, group_id: str, timeout: float = 60) -> None:
    """Wait until the group has joined a restarted broker.

    The embedded broker comes back empty: input produced before the service rejoins lands below the
    positions it still holds from the old broker and would be skipped, which real Kafka, keeping its
    logs, never does."""
    await wait_for(lambda: group_stable(settings, bootstrap, group_id), timeout, every=0.5)
