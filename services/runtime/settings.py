"""Settings from the environment: endpoints and secrets only; rules and routing live in versioned files."""

from pathlib import Path
from typing import Literal

from pydantic import AwareDatetime, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

# deploy/k8s/common.yaml ships its secrets as CHANGE-ME placeholders; a production service that still
# has one was deployed without its secrets filled in, and must not run on a value anyone can read.
_PLACEHOLDER_MARK = "change-me"


def is_placeholder(secret: str) -> bool:
    """Tell whether a secret is still a manifest's CHANGE-ME placeholder."""
    return _PLACEHOLDER_MARK in secret.lower()


def _url_password(url: str) -> str | None:
    try:
        return make_url(url).password
    except ArgumentError:
        return None  # not a URL SQLAlchemy reads: the engine refuses it at start with its own message


class KafkaSettings(BaseSettings):
    """Connection to Kafka, shared by every service (`KAFKA_*`)."""

    # A refused setting's error never quotes the environment: it holds the SASL password.
    model_config = SettingsConfigDict(env_prefix="KAFKA_", extra="ignore", hide_input_in_errors=True)

    bootstrap_servers: str | None = Field(None, description="host:port[,host:port]; unset starts the embedded broker")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    # Apache Kafka supports it; the embedded broker refuses idempotent producers at start.
    enable_idempotence: bool = False
    # Prepended to every topic name: lets tests and tenants share one cluster.
    topic_prefix: str = ""
    client_id: str = "fengqiao"

    @model_validator(mode="after")
    def _sasl_complete(self) -> "KafkaSettings":
        uses_sasl = self.security_protocol.startswith("SASL_")
        if uses_sasl and not (self.sasl_mechanism and self.sasl_username and self.sasl_password):
            raise ValueError("KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD are required with SASL")
        if not uses_sasl and self.sasl_mechanism:
            raise ValueError("KAFKA_SASL_MECHANISM needs KAFKA_SECURITY_PROTOCOL SASL_PLAINTEXT or SASL_SSL")
        return self

    def topic(self, name: str) -> str:
        """Return the full name of a contract topic on this cluster."""
        return f"{self.topic_prefix}{name}"


class ClockSettings(BaseSettings):
    """Simulated time shared by all services (`FENGQIAO_CLOCK_*`), so a month can pass in a minute."""

    model_config = SettingsConfigDict(env_prefix="FENGQIAO_CLOCK_", extra="ignore")

    speed: float = Field(1.0, gt=0, le=10_000_000, description="Simulated seconds per real second")
    epoch: AwareDatetime | None = Field(None, description="Real instant the simulation starts; shared by all processes")
    start: AwareDatetime | None = Field(None, description="Simulated instant at epoch; defaults to epoch")
    until: AwareDatetime | None = Field(None, description="Simulated instant at which time stands still (end of a run)")

    @model_validator(mode="after")
    def _epoch_when_simulated(self) -> "ClockSettings":
        if (self.speed != 1.0 or self.start is not None or self.until is not None) and self.epoch is None:
            raise ValueError("FENGQIAO_CLOCK_EPOCH is required when the clock is simulated")
        return self


class RetrySettings(BaseSettings):
    """How every service retries its store and broker calls (`FENGQIAO_RETRY_*`), shared like the clock."""

    model_config = SettingsConfigDict(env_prefix="FENGQIAO_RETRY_", extra="ignore")

    attempts: int = Field(6, ge=1, le=100, description="Tries of one call before its batch is handed back for redelivery")
    first_delay_seconds: float = Field(0.2, gt=0, le=60, description="Wait after the first failure; each later wait doubles")
    max_delay_seconds: float = Field(5.0, gt=0, le=600, description="Longest wait between two tries")

    def delays(self) -> list[float]:
        """Return the waits between one call's tries: doubling from the first, up to the longest."""
        waits = [self.first_delay_seconds]
        while len(waits) < self.attempts - 1:
            waits.append(min(waits[-1] * 2, self.max_delay_seconds))
        return waits[: self.attempts - 1]

    def schedule_seconds(self) -> float:
        """Return how long one call's tries take at most, waits included: an outage shorter than this is ridden out in place."""
        return sum(self.delays())


class EnvironmentSettings(BaseSettings):
    """The deployment's environment alone, for commands that are no service (`fengqiao topics create`)."""

    model_config = SettingsConfigDict(extra="ignore")

    environment: Literal["development", "production"] = Field("development", validation_alias="FENGQIAO_ENV")


class ServiceSettings(BaseSettings):
    """Settings every service has; each service subclasses it with its own prefix (`TRIAGE_`, ...)."""

    # A refused setting's error never quotes the environment: it holds DATABASE_URL's password and the services' keys.
    model_config = SettingsConfigDict(extra="ignore", hide_input_in_errors=True)

    environment: Literal["development", "production"] = Field(
        "development", validation_alias="FENGQIAO_ENV",
        description="production refuses development defaults and reads departments' input only from their own topics "
        "(workorders.<department>.updates, followups.<department>.results), never the shared workorders.updates and followups.results",
    )
    database_url: str | None = Field(
        None,
        validation_alias="DATABASE_URL",
        description="SQLAlchemy async URL; unset means a SQLite file in data_dir",
    )
    data_dir: Path = Path("var")
    sqlite_cache_mib: int | None = Field(None, ge=1, le=4096, description="SQLite's page cache per connection; unset keeps its 2 MB")
    http_host: str = "127.0.0.1"
    http_port: int = Field(0, ge=0, le=65535, description="0 picks a free port")
    group_id: str | None = None
    batch_size: int = Field(500, ge=1, le=100_000)
    max_message_bytes: int = Field(256 * 1024, ge=1024, le=16 * 1024 * 1024, description="Larger inputs are dead-lettered")
    batch_timeout_ms: int = Field(
        5, ge=1, le=60_000, description="How long an idle consumer waits for records; FastStream then sleeps as long again"
    )
    fetch_max_wait_ms: int = Field(
        10, ge=0, le=60_000, description="How long the broker may hold a fetch for data: an upper bound on each hop's idle latency"
    )
    relaxed_fetch_max_wait_ms: int = Field(
        200, ge=0, le=60_000,
        description="The same bound for inputs no one waits on in real time (department updates, follow-up's inputs): "
        "each idle poll costs the broker and the service CPU that the report path needs",
    )
    fetch_max_bytes: int = Field(
        1024 * 1024, ge=64 * 1024, le=64 * 1024 * 1024,
        description="The most one fetch brings: what a consumer catching up holds undecoded. A batch of 500 records "
        "is under 1 MiB; with Kafka's 50 MiB default the embedded broker sent about 5 MB per partition per fetch",
    )
    session_timeout_ms: int = Field(
        10_000, ge=1_000, le=300_000,
        description="How long the group waits for a silent member before giving its partitions to another; "
        "a group's join also waits for about half of it",
    )
    publish_timeout_ms: int = Field(
        40_000, ge=1_000, le=300_000,
        description="How long an output waits for the broker before its publish fails and the batch or timer round is tried again",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @model_validator(mode="after")
    def _no_placeholder_password_in_production(self) -> "ServiceSettings":
        password = _url_password(self.database_url) if self.database_url else None
        if self.environment == "production" and password and is_placeholder(password):
            raise ValueError("DATABASE_URL still has the manifests' CHANGE-ME password: set the database's real one")
        return self

    def sqlite_default(self, service: str) -> str:
        """Return the SQLite URL used when no DATABASE_URL is set."""
        return f"sqlite+aiosqlite:///{self.data_dir / f'{service}.db'}"

