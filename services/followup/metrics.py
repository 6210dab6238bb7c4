"""Follow-up metrics, declared once; the registry is passed in so tests get a fresh one.

The closure figures (办结率, 调解成功率) and the other gauges of `STORE_RECOUNTED` are recounted from the
shared store, so they stay exact across restarts: every replica exports the same figure, so dashboards and
alerts aggregate them with max, never sum (two replicas would double a sum).
"""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LAG_BUCKETS = (0.1, 1, 10, 60, 600, 3600, 6 * 3600, 24 * 3600, 7 * 24 * 3600)
# Said in the help of every gauge recounted from the store, where whoever writes a query reads it.
FLEET_NOTE = "recounted from the shared store: every replica exports the same figure; aggregate with max, never sum"
STORE_RECOUNTED = (
    "fengqiao_followup_orders_issued",
    "fengqiao_followup_orders_resolved",
    "fengqiao_followup_closure_rate",
    "fengqiao_followup_mediation_success_rate",
    "fengqiao_followup_satisfaction_average",
    "fengqiao_followup_open_overdue_orders",
    "fengqiao_followup_fired",
    "fengqiao_followup_revisits_done",
    "fengqiao_followup_rebounds",
)


def _recounted(name: str, help_text: str, labels: tuple[str, ...], registry: CollectorRegistry) -> Gauge:
    """Declare a gauge recounted from the store, its help saying how to aggregate it."""
    return Gauge(name, f"{help_text}; {FLEET_NOTE}", labels, registry=registry)


class FollowupMetrics:
    """Every metric the follow-up service exports."""

    def __init__(self, registry: CollectorRegistry):
        # Orders seen issued, per department.
        self.orders_issued = _recounted("fengqiao_followup_orders_issued", "Orders issued", ("department",), registry)
        # Orders resolved, per department.
        self.orders_resolved = _recounted("fengqiao_followup_orders_resolved", "Orders resolved", ("department",), registry)
        # Closure rate (办结率): resolved / issued, per department.
        self.closure_rate = _recounted("fengqiao_followup_closure_rate", "Resolved / issued", ("department",), registry)
        # Mediation success rate (调解成功率): disputes resolved without a failed mediation / disputes resolved.
        self.mediation_success_rate = _recounted("fengqiao_followup_mediation_success_rate", "Resolved without failure / resolved", (), registry)
        # Average satisfaction (1-5) over all revisit results.
        self.satisfaction_average = _recounted("fengqiao_followup_satisfaction_average", "Average satisfaction", (), registry)
        # Open orders past their deadline.
        self.open_overdue_orders = _recounted("fengqiao_followup_open_overdue_orders", "Open orders past due", (), registry)
        # Timers fired, by kind (revisit = revisits due; sla_warning, sla_breached).
        self.fired = _recounted("fengqiao_followup_fired", "Timers fired", ("kind",), registry)
        # Revisit results recorded (revisits done).
        self.revisits_done = _recounted("fengqiao_followup_revisits_done", "Revisit results recorded", (), registry)
        # Results that flared up again: rebound or agreement not kept.
        self.rebounds = _recounted("fengqiao_followup_rebounds", "Rebounds and broken agreements", (), registry)
        # Fired minus due, in clock seconds (simulated seconds under a simulated clock).
        self.timer_lag = Histogram("fengqiao_followup_timer_lag_seconds", "Fired - due", buckets=_LAG_BUCKETS, registry=registry)
        # Inputs refused, by reason: dead-lettered, or (revisit results on a department's topic) answered refused.
        self.invalid = Counter("fengqiao_followup_invalid", "Inputs refused", ["reason"], registry=registry)
        # Answers to revisit results on the departments' due topics: accepted or refused.
        self.result_answers = Counter("fengqiao_followup_result_answers", "Answers to revisit results", ["outcome"], registry=registry)
        # Disputes whose personal data this replica erased after the retention (FOLLOWUP_RETENTION_DAYS).
        self.erased_disputes = Counter("fengqiao_followup_erased_disputes", "Disputes erased after the retention", registry=registry)
        # Store calls that failed and were retried.
        self.store_retries = Counter("fengqiao_followup_store_retries", "Store calls retried", registry=registry)

    def show(self, figures: dict) -> None:
        """Set the gauges from a recount of the store."""
        for department, (issued, resolved) in figures["departments"].items():
            self.orders_issued.labels(department).set(issued)
            self.orders_resolved.labels(department).set(resolved)
            self.closure_rate.labels(department).set(resolved / issued if issued else 0)
        resolved = figures["resolved"]
        self.mediation_success_rate.set(figures["resolved_without_failure"] / resolved if resolved else 0)
        self.satisfaction_average.set(figures["satisfaction"])
        self.open_overdue_orders.set(figures["overdue"])
        for kind in ("revisit", "sla_warning", "sla_breached"):
            self.fired.labels(kind).set(figures["fired"].get(kind, 0))
        self.revisits_done.set(figures["results"])
        self.rebounds.set(figures["flared_up"])
