"""The canary: a ruleset version serves only once sample reports graded by it make valid output events.

A valid rules file can still be unusable: 70 flag rules that all match one report give it more flags than
`DisputeTriaged` allows, and then every such report fails at output. The samples include reports that match
as much as a report can (every flag, every vulnerability, the extremes of every number) so such a version
is refused before it replaces a working one.
"""

import hashlib
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any, get_args

from pydantic import ValidationError

from schemas.common import Category
from schemas.deadletters import rejection_reason
from schemas.disputes import DisputeReported, ReassessmentReason, Source
from services.triage.grading import Features, Grader
from services.triage.handlers import Accepted, triaged_event
from services.triage.ruleset import CORRELATION_FLAGS, RISK_FLAGS, VULNERABILITIES, RulesetError, parse_ruleset

_AT = datetime(2026, 1, 1, tzinfo=UTC)
_CAUSES = ("reported", *get_args(ReassessmentReason))


def _report(name: str, **fields: Any) -> DisputeReported:
    base: dict[str, Any] = {
        "event_id": f"canary-{name}",
        "dispute_id": f"CANARY-{name}",
        "reported_at": _AT,
        "source": "grid_app",
        "region": {"county": "诸暨市", "town": "枫桥镇", "community": "枫源村"},
        "category": "neighbor",
        "description": "邻里因排水沟堵塞发生口角。",
        "parties": [{"role": "complainant", "kind": "person", "name": "王某"}, {"role": "respondent", "kind": "person", "name": "李某"}],
        "party_count": 2,
    }
    return DisputeReported.model_validate(base | fields)


_EVERY_PARTY_VULNERABLE = [{"role": "complainant", "kind": "person", "name": f"当事人{n}", "vulnerable": list(VULNERABILITIES)} for n in range(4)]
_EVERY_RISK = dict.fromkeys(RISK_FLAGS, True)
_MOST = {
    "parties": _EVERY_PARTY_VULNERABLE,
    "risk": _EVERY_RISK,
    "party_count": 1_000_000,
    "amount_cny": 1e13,
    "history": {"mediation_attempts": 10_000, "failed_mediations": 10_000, "sla_breaches": 10_000, "rebounds": 10_000, "previous_level": 3},
}
# Rules may test `<` as well as `>=`: the smallest numbers with every flag set match those.
_LEAST = {"parties": _EVERY_PARTY_VULNERABLE[:1], "risk": _EVERY_RISK, "party_count": 1, "amount_cny": 0.0}


def sample_reports() -> list[tuple[DisputeReported, str]]:
    """Return the canary's reports with their causes: a plain one, and both extremes in every category, source and cause."""
    samples = [(_report("plain"), "reported")]
    for category in get_args(Category):
        samples += [(_report(f"most-{category}", category=category, **_MOST), "reported")]
        samples += [(_report(f"least-{category}", category=category, **_LEAST), "reported")]
    samples += [(_report(f"most-{source}", source=source, **_MOST), "reported") for source in get_args(Source)]
    samples += [(_report(f"most-{cause}", **_MOST), cause) for cause in _CAUSES]
    return samples


def run_canary(grader: Grader) -> None:
    """Grade every sample and build its output event; raise RulesetError naming the first that cannot be published."""
    # Every flag the enrichment could add, as if every keyword was in the text and every correlation found.
    detected = frozenset(grader.ruleset.spec.keywords) | frozenset(grader.ruleset.spec.detection.flags)
    for report, cause in sample_reports():
        features = Features(detected, frozenset(CORRELATION_FLAGS), cause)
        try:
            triage = grader.grade(report, features)
            triaged_event(Accepted(None, report.event_id, report, cause), triage, grader.version, _AT)
        except ValidationError as error:
            raise RulesetError(f"canary: report {report.event_id!r} graded to an invalid output: {rejection_reason(error)}", reason="canary") from None
        except Exception as error:  # noqa: BLE001 - the engine's failures are not typed; any one refuses the version
            raise RulesetError(f"canary: report {report.event_id!r} failed to grade: {type(error).__name__}", reason="canary") from None


class ProvenGraders:
    """Builds a grader only for a ruleset text that passes the canary.

    The compile must come before the canary (it grades with the compiled rules), and durable-rules never
    frees a compiled ruleset: each distinct failing text holds its compile, a few hundred kB, for the life
    of the process. Failures are remembered by digest so the same text, offered again on the topic or
    file, is refused without a second compile.
    """

    def __init__(self, remembered: int = 256):
        self.remembered = remembered
        # The message and reason only: the error itself would hold its traceback's frames, and so the text.
        self._failed: OrderedDict[str, tuple[str, str]] = OrderedDict()

    def __call__(self, text: str) -> Grader:
        """Parse, compile and canary a ruleset text; raise RulesetError with the reason it cannot serve."""
        digest = hashlib.sha256(text.encode("utf-8", errors="replace")).hexdigest()
        if digest in self._failed:
            raise RulesetError(*self._failed[digest])
        grader = Grader(parse_ruleset(text))
        try:
            run_canary(grader)
        except RulesetError as error:
            self._failed[digest] = (str(error), error.reason)
            if len(self._failed) > self.remembered:
                self._failed.popitem(last=False)
            raise
        return grader
