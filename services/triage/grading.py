"""The triage decision: enrich a report's text, then grade it with durable-rules. No broker, clock or database."""

import bisect
import copy
import functools
import itertools
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
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


# A key of the fact that this report lacks (no amount, no previous level): left out of the fact the engine sees.
_ABSENT = None


def _field_reader(path: str, cuts: tuple[float, ...] | None) -> Callable[..., Any]:
    # One field of the report (or the cause), a number by its band; a reader's arguments as `fact_readers` says.
    if path == "cause":
        return lambda report, features, flags, vulnerable: features.cause
    field_of = attrgetter(path)  # a dotted path (history.rebounds) walks the nested model
    if cuts is None:
        return lambda report, features, flags, vulnerable: field_of(report)
    return lambda report, features, flags, vulnerable: None if (number := field_of(report)) is None else _representative(number, cuts)


def fact_readers(ruleset: Ruleset, cuts: dict[str, tuple[float, ...]]) -> tuple[tuple[str, Callable[..., Any]], ...]:
    """Return, for each key of the fact some rule compares (and the catch-all's), how to read its canonical value.

    No other key can change what matches, so the values read, in this order, are a grade's whole input from the
    report; a reader takes the report, its features, its effective flags and its parties' vulnerabilities.
    """
    readers: dict[str, Callable[..., Any]] = {_CATCH_ALL_KEY: lambda report, features, flags, vulnerable: 1}
    for rule in ruleset.rules:
        for leaf in _leaves(rule.when):
            if leaf.op == "contains_any":
                for member in leaf.value:
                    if leaf.field == "flags":
                        readers[_member_key(leaf.field, member)] = lambda report, features, flags, vulnerable, m=member: m in flags
                    else:
                        readers[_member_key(leaf.field, member)] = lambda report, features, flags, vulnerable, m=member: m in vulnerable
            else:
                readers[_key(leaf.field)] = _field_reader(leaf.field, cuts.get(_key(leaf.field)))
    return tuple(sorted(readers.items()))


def _representative(value: float, cuts: tuple[float, ...]) -> float:
    # A plain representative of the number's band among the constants rules compare it with. The rules cannot tell two
    # numbers of one band apart, so the outcome is the same; the engine only ever parses a few well-formed numbers (it
    # refuses some valid JSON ones, such as 5e-324); and reports of one band share one grade.
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
        # Only the keys some rule reads are built: facts differing in others match the same rules, so the engine is
        # asked once per view of the keys read (790 views among 3,039 distinct facts of 50,000 simulator reports,
        # each ask some 100 us), and a grade's memo key is that view with the flags the output lists.
        self._readers = fact_readers(ruleset, self._cuts)
        self._reads_vulnerable = any(key.startswith(_member_key("vulnerable", "")) for key, _ in self._readers)
        self._matched_view = functools.lru_cache(maxsize=memo_size)(self._match_view)

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

    def _match_view(self, view: tuple[Any, ...]) -> tuple[str, ...]:
        fact = {key: value for (key, _), value in zip(self._readers, view) if value is not _ABSENT}
        return tuple(self._match(fact))

    def grade(self, report: DisputeReported, features: Features) -> Triage:
        """Grade a report: level is the maximum over matched rules, urgency likewise, every match listed."""
        flags = effective_flags(report, features)
        vulnerable = {v for party in report.parties for v in party.vulnerable} if self._reads_vulnerable else set()
        view = tuple(read(report, features, flags, vulnerable) for _, read in self._readers)
        # The flags are listed in the output, the detected ones also apart.
        key = (view, frozenset(flags), features.detected)
        triage = self._memo.get(key)
        if triage is None:
            triage = self._memo[key] = self._decide(self._matched_view(view), flags, features)
            if len(self._memo) > self.memo_size:
                self._memo.popitem(last=False)
        else:
            self._memo.move_to_end(key)
        return triage

    def _decide(self, matched_ids: Sequence[str], flags: set[str], features: Features) -> Triage:
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
