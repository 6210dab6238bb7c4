"""Dispatch settings (`DISPATCH_*`): endpoints and operational knobs; routing, disclosure and holidays live in their files."""

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.dispatch.calendar import SHIPPED_HOLIDAYS
from services.dispatch.disclosure import DEFAULT_DISCLOSURE
from services.dispatch.routing import DEFAULT_ROUTING
from services.runtime.settings import ServiceSettings


class DispatchSettings(ServiceSettings):
    """Settings of the dispatch service."""

    model_config = SettingsConfigDict(env_prefix="DISPATCH_")

    routing_file: Path = DEFAULT_ROUTING
    disclosure_file: Path = Field(DEFAULT_DISCLOSURE, description="Which party details each recipient receives (disclosure.py)")
    routing_poll_seconds: float = Field(2.0, gt=0, le=3600, description="How often the routing, disclosure and holidays files are checked")
    holidays_file: Path | None = Field(
        SHIPPED_HOLIDAYS, description="YAML of the State Council's holiday notices, by year (see calendar.py); unset: the library's years only"
    )
    group_id: str = "fengqiao-dispatch"
    gauge_refresh_seconds: float = Field(5.0, gt=0, le=3600, description="How often the open-order and calendar gauges are refreshed")
    retention_days: int = Field(
        180, ge=30, le=3650, description="Days after a dispute settles (no open order) before its report's personal data is erased"
    )
    park_seconds: float = Field(
        600.0, ge=0, le=7 * 86400, description="How long an update naming an order not yet visible is parked before it is refused"
    )
