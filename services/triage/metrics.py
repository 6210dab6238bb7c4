"""Triage metrics, declared once; the registry is passed in so tests get a fresh one. No personal data in labels."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.triage.ruleset import REJECTION_REASONS

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class TriageMetrics:
    """Every metric the triage service exports."""

    def __init__(self, registry: CollectorRegistry):
        # Disputes graded, by outcome and by where they came from.
        self.triaged = Counter(
            "fengqiao_triage_triaged", "Disputes graded", ["level", "urgency", "category", "source"], registry=registry
        )
        # How often each rule matched; rule ids come from the rules file, so the label set is bounded.
        self.rule_matches = Counter("fengqiao_triage_rule_matches", "Rule matches", ["rule_id"], registry=registry)
        # Messages dead-lettered, by the field and kind of error (never the input).
        self.invalid = Counter("fengqiao_triage_invalid", "Messages dead-lettered", ["reason"], registry=registry)
        # Repeated event ids that had no second effect.
        self.duplicates = Counter("fengqiao_triage_duplicates", "Repeated event ids skipped", registry=registry)
        # Wall time to process one consumed batch, from decode to acknowledged outputs and store write.
        self.batch_duration = Histogram(
            "fengqiao_triage_batch_duration_seconds", "Time to process one batch", buckets=_LATENCY_BUCKETS, registry=registry
        )
        # Per report: broker append time of the input to the acknowledgement of its output.
        self.latency = Histogram(
            "fengqiao_triage_latency_seconds", "Input appended to output acknowledged", buckets=_LATENCY_BUCKETS, registry=registry
        )
        # 1 for the ruleset version in use, 0 for versions used before.
        self.ruleset_active = Gauge("fengqiao_triage_ruleset_active", "Ruleset version in use", ["version"], registry=registry)
        # Ruleset versions offered at runtime, accepted or rejected, and why rejected (REJECTION_REASONS, empty when
        # accepted). Every rejection series exists from the start, so an alert on a signature refusal sees its first.
        self.ruleset_reloads = Counter(
            "fengqiao_triage_ruleset_reloads", "Ruleset versions offered", ["result", "origin", "reason"], registry=registry
        )
        for origin in ("file", "topic"):
            for reason in REJECTION_REASONS:
                self.ruleset_reloads.labels("rejected", origin, reason)
        # Store calls that failed and were retried (database down, file locked).
        self.store_retries = Counter("fengqiao_triage_store_retries", "Store calls retried", registry=registry)
