"""The triage decision: enrich a report's text, then grade it with durable-rules. No broker, clock or database."""

import bisect
import copy
import itertools
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from durable import engine as durable

from schemas.common import MatchedRule
from schemas.disputes import DisputeReported
from services.triage.ruleset import (
    FIELDS,
    KNOWN_FLAGS,
    RISK_FLAGS,
    VULNERABILITIES,
    URGENCY_ORDER,
    AllOf,
    AnyOf,
    Compare,
    Condition,
    KeywordSpec,
    Not,
    Ruleset,
)
from services.triage.detection import Detection, detect, detected_flags

_NEGATED = {"==": "!=", "!=": "==", "<": ">=", "<=": ">", ">": "<=", ">=": "<"}
_DURABLE_OP = {"!=": "$neq", "<": "$lt", "<=": "$lte", ">": "$gt", ">=": "$gte"}


def _key(path: str) -> str:
    return path.replace(".", "__")


def _member_key(path: str, value: str) -> str:
    # A list field becomes one boolean key per member, so contains_any is plain equality.
    return f"{_key(path)}__has__{value}"


def _either(kind: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    return items[0] if len(items) == 1 else {kind: items}


def _compare(field_name: str, op: str, value: Any) -> dict[str, Any]:
    return {_key(field_name): value} if op == "==" else {_DURABLE_OP[op]: {_key(field_name): value}}


def to_durable(condition: Condition, negate: bool = False) -> dict[str, Any]:
    """Translate a condition to durable-rules JSON, pushing `not` down to the comparisons.

    A comparison on an absent value (an unknown amount, no previous level) never matches,
    negated or not.
    """
    if isinstance(condition, Not):
        return to_durable(condition.item, not negate)
    if isinstance(condition, (AllOf, AnyOf)):
        conjunction = isinstance(condition, AllOf) != negate
        return _either("$and" if conjunction else "$or", [to_durable(c, negate) for c in condition.items])
    return _leaf(condition, negate)


def _leaf(leaf: Compare, negate: bool) -> dict[str, Any]:
    if leaf.op == "contains_any":
        # Every member key is present in the fact, True or False ($nex hangs the engine).
        if negate:
            return _either("$and", [{_member_key(leaf.field, v): False} for v in leaf.value])
        return _either("$or", [{_member_key(leaf.field, v): True} for v in leaf.value])
    if leaf.op == "in":
        op = "!=" if negate else "=="
        return _either("$and" if negate else "$or", [_compare(leaf.field, op, v) for v in leaf.value])
    return _compare(leaf.field, _NEGATED[leaf.op] if negate else leaf.op, leaf.value)


# Matches every fact. Deleting the state of a fact that matched nothing crashes the engine, so
# every fact must match something; file rule ids start with a letter and cannot collide.
_CATCH_ALL = "_every_fact"
_CATCH_ALL_KEY = "_fact"


def compile_ruleset(ruleset: Ruleset) -> dict[str, Any]:
    """Build the durable-rules JSON ruleset: one rule per file rule, its action named by the rule id."""
    rules = {rule.id: {"all": [{"m": to_durable(rule.when)}], "run": rule.id} for rule in ruleset.rules}
    rules[_CATCH_ALL] = {"all": [{"m": {"$gte": {_CATCH_ALL_KEY: 1}}}], "run": _CATCH_ALL}
    return {ruleset.engine_name: rules}


def detect_keywords(description: str, keywords: dict[str, KeywordSpec]) -> frozenset[str]:
    """Return the risk flags whose words appear in the description, ignoring words inside `not_within` phrases."""
    found = set()
    for flag, spec in keywords.items():
        text = description
        for phrase in spec.not_within:
            text = text.replace(phrase, "\0")
        if any(word in text for word in spec.words):
            found.add(flag)
    return frozenset(found)


def detect_text(description: str, ruleset: Ruleset) -> tuple[frozenset[str], tuple[Detection, ...]]:
    """Return the flags a description raises (keyword lists and detection patterns) and the phrases that raised them."""
    detections = detect(description, ruleset.detector)
    return detect_keywords(description, ruleset.spec.keywords) | detected_flags(detections), detections


@dataclass(frozen=True)
class Features:
    """What enrichment found beside the report: detected flags (with their phrases) and store correlations."""

    detected: frozenset[str] = frozenset()
    correlated: frozenset[str] = frozenset()
    cause: str = "reported"
    # Not part of the grade (it depends only on the flags), so not in the memo key; copied to the output event.
    detections: tuple[Detection, ...] = ()

    @classmethod
    def of_text(cls, description: str, ruleset: Ruleset, correlated: frozenset[str] = frozenset(), cause: str = "reported") -> "Features":
        """Detect a description's risk language and wrap it with correlations and the cause."""
        detected, detections = detect_text(description, ruleset)
        return cls(detected, correlated, cause, detections)


@dataclass(frozen=True)
class Triage:
    """The grade of one report and the reasons for it."""

    level: int
    tier: str
    urgency: str
    flags: list[str]
    matched_rules: list[MatchedRule] = field(default_factory=list)


def effective_flags(report: DisputeReported, features: Features) -> set[str]:
    """Merge reporter flags, detected flags and correlations: a detected flag counts like a reported one."""
    reported = {name for name in RISK_FLAGS if getattr(report.risk, name)}
    return reported | set(features.detected) | set(features.correlated)


# The keys of the flags and vulnerabilities, written once: deriving 30 of them for each report was a tenth of its grading.
_FLAG_KEYS = tuple((_member_key("flags", f), f) for f in KNOWN_FLAGS)
_VULNERABLE_KEYS = tuple((_member_key("vulnerable", v), v) for v in VULNERABILITIES)


# The fact's keys of the report's own fields, in the fact's order, written once rather than per report.
_CATEGORY, _SOURCE, _CAUSE, _PARTY_COUNT, _AMOUNT = (_key(p) for p in ("category", "source", "cause", "party_count", "amount_cny"))
_HISTORY_KEYS = tuple(
    (_key(f"history.{name}"), name) for name in ("mediation_attempts", "failed_mediations", "sla_breaches", "rebounds", "previous_level")
)


def build_fact(report: DisputeReported, features: Features, flags: set[str]) -> dict[str, Any]:
    """Flatten a report and its features into the fact rules are matched against."""
    fact: dict[str, Any] = {_CATEGORY: report.category, _SOURCE: report.source, _CAUSE: features.cause, _PARTY_COUNT: report.party_count}
    if report.amount_cny is not None:
        fact[_AMOUNT] = report.amount_cny
    history = report.history
    for key, name in _HISTORY_KEYS:
        value = getattr(history, name)
        if value is not None:
            fact[key] = value
    vulnerable = {v for party in report.parties for v in party.vulnerable}
    for key, f in _FLAG_KEYS:
        fact[key] = f in flags
    for key, v in _VULNERABLE_KEYS:
        fact[key] = v in vulnerable
    fact[_CATCH_ALL_KEY] = 1
    return fact


def _leaves(condition: Condition) -> list[Compare]:
    if isinstance(condition, Not):
        return _leaves(condition.item)
    if isinstance(condition, (AllOf, AnyOf)):
        return [leaf for item in condition.items for leaf in _leaves(item)]
    return [condition]


def thresholds(ruleset: Ruleset) -> dict[str, tuple[float, ...]]:
    """Return, per numeric fact key, every constant the rules compare it with."""
    found: dict[str, set[float]] = {_key(path): set() for path, spec in FIELDS.items() if spec.kind in ("int", "number")}
    for rule in ruleset.rules:
        for leaf in _leaves(rule.when):
            if _key(leaf.field) in found:
                found[_key(leaf.field)].update(leaf.value if isinstance(leaf.value, tuple) else (leaf.value,))
    return {key: tuple(sorted(values)) for key, values in found.items()}


def _representative(value: float, cuts: tuple[float, ...]) -> float:
    if not cuts:
        return 0  # no rule reads this number
    if value in cuts:
        return value
    place = bisect.bisect_left(cuts, value)
    if place == 0:
        return cuts[0] - 1
    if place == len(cuts):
        return cuts[-1] + 1
    return (cuts[place - 1] + cuts[place]) / 2


def canonical(fact: dict[str, Any], cuts: dict[str, tuple[float, ...]]) -> dict[str, Any]:
    """Replace each number by a plain representative of its band among the constants rules compare it with.

    The rules cannot tell two numbers of one band apart, so the outcome is the same; the engine only
    ever parses a few well-formed numbers (it refuses some valid JSON ones, such as 5e-324); and equal
    canonical facts can share one grade.
    """
    # Only the numbers are replaced, in place in a copy: the keys keep their order (the memo's key is the items in order).
    canonical = dict(fact)
    for key, bounds in cuts.items():
        if key in canonical:
            canonical[key] = _representative(canonical[key], bounds)
    return canonical


class _Host(durable.Host):
    """A durable-rules host whose actions only record which rule matched."""

    def __init__(self) -> None:
        super().__init__()
        self.matched: list[str] = []

    def _run(self) -> None:
        # The stock host polls its rulesets from timer threads; racing those threads against
        # delete_state crashes the C engine. Grading is synchronous and uses no engine timers.
        return None

    def get_action(self, action_name: str) -> Any:
        def record(_closure: Any) -> None:
            if action_name != _CATCH_ALL:
                self.matched.append(action_name)

        return record


class Grader:
    """One compiled ruleset version, grading reports with a collect-max hit policy."""

    # Session ids are unique per grade and deleted after it: durable-rules keeps at most 1,024 live.
    _session_ids = itertools.count()
    def __init__(self, ruleset: Ruleset, memo_size: int = 2048):
        # Distinct signatures are few (enums, booleans, numbers by threshold band); the bound keeps memory flat anyway.
        self.memo_size = memo_size
        self.ruleset = ruleset
        self._host = _Host()
        # set_rulesets mutates its argument.
        self._host.set_rulesets(copy.deepcopy(compile_ruleset(ruleset)))
        self._cuts = thresholds(ruleset)
        self._memo: OrderedDict[tuple[Any, ...], Triage] = OrderedDict()

    @property
    def version(self) -> str:
        """Return the ruleset version this grader applies."""
        return self.ruleset.version

    def _match(self, fact: dict[str, Any]) -> list[str]:
        session = str(next(self._session_ids))
        fact = fact | {"sid": session, "id": session}
        self._host.matched = []
        try:
            self._host.assert_fact(self.ruleset.engine_name, fact)
        finally:
            self._host.delete_state(self.ruleset.engine_name, session)
        return self._host.matched

    def grade(self, report: DisputeReported, features: Features) -> Triage:
        """Grade a report: level is the maximum over matched rules, urgency likewise, every match listed."""
        flags = effective_flags(report, features)
        fact = canonical(build_fact(report, features, flags), self._cuts)
        # The flags are in the fact; detected ones are also listed apart in the output.
        key = (tuple(fact.items()), features.detected)
        triage = self._memo.get(key)
        if triage is None:
            triage = self._memo[key] = self._decide(self._match(fact), flags, features)
            if len(self._memo) > self.memo_size:
                self._memo.popitem(last=False)
        else:
            self._memo.move_to_end(key)
        return triage

    def _decide(self, matched_ids: list[str], flags: set[str], features: Features) -> Triage:
        # The engine fires in its own order; list matches in file order so explanations are stable.
        matched = [rule for rule in self.ruleset.rules if rule.id in set(matched_ids)]
        level = max([r.then.level_at_least or 1 for r in matched], default=1)
        urgencies = [r.then.urgency_at_least for r in matched if r.then.urgency_at_least]
        urgencies.append(self.ruleset.spec.levels[level].urgency_at_least)
        urgency = max(urgencies, key=URGENCY_ORDER.index)
        output_flags = flags | {f"detected:{d}" for d in features.detected} | {r.then.flag for r in matched if r.then.flag}
        reasons = [MatchedRule(id=r.id, reason=r.reason) for r in matched] or [
            MatchedRule(id="default", reason=self.ruleset.spec.default_reason)
        ]
        return Triage(level, self.ruleset.spec.levels[level].tier, urgency, sorted(output_flags), reasons)
