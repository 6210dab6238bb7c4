"""Triage settings (`TRIAGE_*`): endpoints, secrets and operational knobs; rules live in the rules file."""

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from services.runtime.settings import ServiceSettings, is_placeholder
from services.triage.ruleset import DEFAULT_RULES
from services.triage.signing import SignaturePolicy, parse_public_key, split_keys, trusted_keys

# Development only: lets a newcomer run triage with no secrets; production mode refuses it.
_DEVELOPMENT_HMAC_KEY = "fengqiao-development-only-key"
# HMAC-SHA256's own block of strength: a shorter key is the easier thing to guess, and the hashed
# ID numbers and phones are few enough to be tried one by one against a guessed key.
MIN_PRODUCTION_KEY_BYTES = 32


class TriageSettings(ServiceSettings):
    """Settings of the triage service."""

    model_config = SettingsConfigDict(env_prefix="TRIAGE_")

    rules_file: Path = DEFAULT_RULES
    rules_poll_seconds: float = Field(2.0, gt=0, le=3600, description="How often the rules file is checked for a new version")
    hmac_key: SecretStr | None = Field(None, description="Key of the HMAC that hashes ID numbers and phones")
    dedupe_days: int = Field(7, ge=7, le=3650, description="How long processed event ids are remembered")
    # Every report writes sightings to, and probes, random pages of the sightings' key index: with SQLite's 2 MB
    # cache most were read back from the file (in process, 50,000 reports: store 76 -> 66 us a report at 64 MB). On the
    # broker, with the log truncated through the writer (4deeb85, so the cache was never emptied), 2, 16, 32 and 64 MB
    # ran within the noise of each other and 64 MB took triage's peak RSS from 168 to 212 MB. The reader truncates the
    # log again (f85faeb), which empties the cache every few seconds under load: a larger one gains still less.
    sqlite_cache_mib: int | None = Field(16, ge=1, le=4096, description="SQLite's page cache per connection; unset keeps its 2 MB")
    group_id: str = "fengqiao-triage"
    # NoDecode: the variable is a comma-separated list (or a JSON list), not pydantic-settings' JSON only.
    rules_public_keys: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="Ed25519 public keys trusted to sign rulesets, comma-separated, each PEM or base64 of the raw 32 bytes; "
        "when set, every ruleset (file and rules.triage) must be signed by one of them",
    )

    @field_validator("rules_public_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        return split_keys(value) if isinstance(value, str) else value

    @field_validator("rules_public_keys")
    @classmethod
    def _keys_parse(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for key in value:
            parse_public_key(key)
        return value

    @model_validator(mode="after")
    def _key_in_production(self) -> "TriageSettings":
        if self.environment != "production":
            return self
        if self.hmac_key is None:
            raise ValueError("TRIAGE_HMAC_KEY is required when FENGQIAO_ENV=production")
        # The messages never quote the key: they are printed and logged.
        key = self.hmac_key.get_secret_value()
        if key == _DEVELOPMENT_HMAC_KEY:
            raise ValueError("TRIAGE_HMAC_KEY is the development key, which is public: production needs its own random secret")
        if is_placeholder(key):
            raise ValueError("TRIAGE_HMAC_KEY is still the manifests' CHANGE-ME placeholder: set a random secret")
        if len(key.encode()) < MIN_PRODUCTION_KEY_BYTES:
            raise ValueError(
                f"TRIAGE_HMAC_KEY has {len(key.encode())} bytes; production needs at least {MIN_PRODUCTION_KEY_BYTES} "
                "(for example `openssl rand -base64 32`)"
            )
        if not self.rules_public_keys:
            raise ValueError("TRIAGE_RULES_PUBLIC_KEYS is required when FENGQIAO_ENV=production: rulesets must be signed")
        return self

    def signature_policy(self) -> SignaturePolicy:
        """Return which rulesets may serve: signed by a listed key, or any when none is listed (development only)."""
        return SignaturePolicy(trusted_keys(self.rules_public_keys))

    def hmac_key_bytes(self) -> bytes:
        """Return the HMAC key, or the development key outside production."""
        return (self.hmac_key.get_secret_value() if self.hmac_key else _DEVELOPMENT_HMAC_KEY).encode()
