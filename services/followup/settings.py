"""Follow-up settings (`FOLLOWUP_*`): revisit schedule, timer cadence and operational knobs."""

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.dispatch.disclosure import DEFAULT_DISCLOSURE
from services.runtime.settings import ServiceSettings


class FollowupSettings(ServiceSettings):
    """Settings of the follow-up service."""

    model_config = SettingsConfigDict(env_prefix="FOLLOWUP_")

    revisit_days: list[int] = Field([7, 30], min_length=1, max_length=10, description="Revisits after resolution (一事一回访)")
    warning_fraction: float = Field(0.8, gt=0, lt=1, description="Share of the time to the deadline at which to warn")
    max_tick_seconds: float = Field(1.0, gt=0, le=60, description="Longest real wait between looks at the timer table")
    fire_batch: int = Field(500, ge=1, le=10_000, description="Timers claimed per round")
    disclosure_file: Path = Field(DEFAULT_DISCLOSURE, description="Which party details a revisit carries: the dispatch service's policy file")
    retention_days: int = Field(
        180, ge=30, le=3650,
        description="Days after a dispute settles (no open order, no pending timer) before its report's personal data is erased",
    )
    group_id: str = "fengqiao-followup"
    gauge_refresh_seconds: float = Field(2.0, gt=0, le=3600, description="How often the closure figures are recounted")
