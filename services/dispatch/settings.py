"""Dispatch settings (`DISPATCH_*`): endpoints and operational knobs; routing lives in the routing file."""

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.dispatch.routing import DEFAULT_ROUTING
from services.runtime.settings import ServiceSettings


class DispatchSettings(ServiceSettings):
    """Settings of the dispatch service."""

    model_config = SettingsConfigDict(env_prefix="DISPATCH_")

    routing_file: Path = DEFAULT_ROUTING
    routing_poll_seconds: float = Field(2.0, gt=0, le=3600, description="How often the routing file is checked")
    calendar_overrides: Path | None = Field(None, description="YAML of workdays/holidays the calendar library lacks")
    group_id: str = "fengqiao-dispatch"
    gauge_refresh_seconds: float = Field(5.0, gt=0, le=3600, description="How often open-order gauges are recounted")
