"""Dispatch metrics, declared once; the registry is passed in so tests get a fresh one. No personal data in labels."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# Gauges recounted from the shared store: every replica exports the same figure, so queries take the max, never the sum.
STORE_RECOUNTED = ("fengqiao_dispatch_open_orders",)


class DispatchMetrics:
    """Every metric the dispatch service exports."""

    def __init__(self, registry: CollectorRegistry):
        # Work orders issued, by department, level and role.
        self.orders_issued = Counter(
            "fengqiao_dispatch_orders_issued", "Work orders issued", ["department", "level", "role"], registry=registry
        )
        # Orders not yet resolved, failed, returned or superseded, recounted from the store.
        self.open_orders = Gauge(
            "fengqiao_dispatch_open_orders",
            "Open work orders; recounted from the shared store: every replica exports the same figure; aggregate with max, never sum",
            ["department"],
            registry=registry,
        )
        # Department updates applied, by new status.
        self.updates = Counter("fengqiao_dispatch_updates", "Updates applied", ["status"], registry=registry)
        # Escalations: back to triage after failed mediation, or to the governance centre after a return.
        self.escalations = Counter("fengqiao_dispatch_escalations", "Escalations", ["reason"], registry=registry)
        # Reports of a case already held: by channel, by its own id or another platform's, and what they did to it.
        self.rereports = Counter(
            "fengqiao_dispatch_rereports", "Reports of a case already held", ["source", "matched_by", "outcome"], registry=registry
        )
        # Answers to department updates on their own topics: applied, superseded (the order was replaced), refused.
        self.answers = Counter("fengqiao_dispatch_update_answers", "Answers to department updates", ["outcome"], registry=registry)
        # Open orders withdrawn by a new attempt: superseded by the department's new order, or rerouted away from it.
        self.cancelled_orders = Counter("fengqiao_dispatch_orders_cancelled", "Open orders cancelled by a new attempt", ["reason"], registry=registry)
        # Updates refused (unknown order past its parking, wrong department, illegal transition, event id reused, invalid message).
        self.rejected_updates = Counter("fengqiao_dispatch_rejected_updates", "Updates refused", ["reason"], registry=registry)
        # Triaged events that were not valid contracts (dead-lettered).
        self.invalid_triaged = Counter("fengqiao_dispatch_invalid_triaged", "Invalid triaged events", registry=registry)
        # Repeated input event ids that had no second effect.
        self.duplicates = Counter("fengqiao_dispatch_duplicates", "Repeated event ids skipped", ["topic"], registry=registry)
        # Triaged event appended to the broker -> its orders acknowledged.
        self.latency = Histogram(
            "fengqiao_dispatch_latency_seconds", "Triaged appended to orders acknowledged", buckets=_LATENCY_BUCKETS, registry=registry
        )
        # 1 for the routing table version in use, 0 for versions used before.
        self.routing_active = Gauge("fengqiao_dispatch_routing_active", "Routing version in use", ["version"], registry=registry)
        # Routing versions offered at runtime, accepted or rejected.
        self.routing_reloads = Counter(
            "fengqiao_dispatch_routing_reloads", "Routing versions offered", ["result", "origin"], registry=registry
        )
        # 1 for the disclosure policy version in use, 0 for versions used before.
        self.disclosure_active = Gauge("fengqiao_dispatch_disclosure_active", "Disclosure policy version in use", ["version"], registry=registry)
        # Disclosure policy versions offered at runtime, accepted or rejected.
        self.disclosure_reloads = Counter(
            "fengqiao_dispatch_disclosure_reloads", "Disclosure policy versions offered", ["result", "origin"], registry=registry
        )
        # 1 for the holidays file version in use, 0 for versions used before.
        self.holidays_active = Gauge("fengqiao_dispatch_holidays_active", "Holidays file version in use", ["version"], registry=registry)
        # Holidays file versions offered at runtime, accepted or rejected.
        self.holidays_reloads = Counter(
            "fengqiao_dispatch_holidays_reloads", "Holidays file versions offered", ["result", "origin"], registry=registry
        )
        # Days from today (China's date) to the last day the holidays file or the library decides without a gap;
        # deadlines beyond it count weekends only.
        self.calendar_covered_days = Gauge(
            "fengqiao_dispatch_calendar_covered_days", "Days ahead the working-day calendar is known", registry=registry
        )
        # Disputes whose personal data this replica erased after the retention (DISPATCH_RETENTION_DAYS).
        self.erased_disputes = Counter("fengqiao_dispatch_erased_disputes", "Disputes erased after the retention", registry=registry)
        # Store calls that failed and were retried.
        self.store_retries = Counter("fengqiao_dispatch_store_retries", "Store calls retried", registry=registry)
