"""Triage settings (`TRIAGE_*`): endpoints, secrets and operational knobs; rules live in the rules file."""

from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from services.runtime.settings import ServiceSettings
from services.triage.ruleset import DEFAULT_RULES

# Development only: lets a newcomer run triage with no secrets; production mode refuses it.
_DEVELOPMENT_HMAC_KEY = "fengqiao-development-only-key"


class TriageSettings(ServiceSettings):
    """Settings of the triage service."""

    model_config = SettingsConfigDict(env_prefix="TRIAGE_")

    rules_file: Path = DEFAULT_RULES
    rules_poll_seconds: float = Field(2.0, gt=0, le=3600, description="How often the rules file is checked for a new version")
    hmac_key: SecretStr | None = Field(None, description="Key of the HMAC that hashes ID numbers and phones")
    dedupe_days: int = Field(7, ge=7, le=3650, description="How long processed event ids are remembered")
    group_id: str = "fengqiao-triage"

    @model_validator(mode="after")
    def _key_in_production(self) -> "TriageSettings":
        if self.environment == "production" and self.hmac_key is None:
            raise ValueError("TRIAGE_HMAC_KEY is required when FENGQIAO_ENV=production")
        return self

    def hmac_key_bytes(self) -> bytes:
        """Return the HMAC key, or the development key outside production."""
        return (self.hmac_key.get_secret_value() if self.hmac_key else _DEVELOPMENT_HMAC_KEY).encode()
