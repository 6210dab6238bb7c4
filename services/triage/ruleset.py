"""Triage rules as data: the YAML file format, its validation, and compilation to a durable-rules ruleset.

A rule says `when` (a condition over the fields in FIELDS) and `then` (raise the level, raise the
urgency, add a flag). Nothing in a rules file is executed: it is parsed into the Condition tree
below and translated into durable-rules JSON.
"""

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator, model_validator

from schemas.common import TIER_BY_LEVEL, Category, Tier, Urgency
from schemas.disputes import ReassessmentReason, Source
from services.runtime.yamlfile import yaml_mapping
from services.triage import detection

RISK_FLAGS = ("violence_threat", "weapon_involved", "self_harm_threat", "cross_region", "mass_gathering", "petition_history")
CORRELATION_FLAGS = ("repeat_parties", "group_wage_risk")
KNOWN_FLAGS = RISK_FLAGS + CORRELATION_FLAGS
VULNERABILITIES = ("minor", "elderly", "disabled", "pregnant")
URGENCY_ORDER: tuple[Urgency, ...] = ("routine", "urgent", "immediate")


@dataclass(frozen=True)
class FieldSpec:
    """A field rules may test: its kind and, for names, the values it can take."""

    kind: Literal["int", "number", "name", "names"]
    values: tuple[str, ...] = ()


# The vocabulary of `when`: every path a rule may name, over the report and its enrichment.
FIELDS: dict[str, FieldSpec] = {
    "category": FieldSpec("name", get_args(Category)),
    "source": FieldSpec("name", get_args(Source)),
    "cause": FieldSpec("name", ("reported", *get_args(ReassessmentReason))),
    "party_count": FieldSpec("int"),
    "amount_cny": FieldSpec("number"),
    "history.mediation_attempts": FieldSpec("int"),
    "history.failed_mediations": FieldSpec("int"),
    "history.sla_breaches": FieldSpec("int"),
    "history.rebounds": FieldSpec("int"),
    "history.previous_level": FieldSpec("int"),
    "flags": FieldSpec("names", KNOWN_FLAGS),
    "vulnerable": FieldSpec("names", VULNERABILITIES),
}

# Limits checked before a text is parsed into the model, so a hostile or mistaken text costs little.
MAX_TEXT_BYTES = 256 * 1024
MAX_WHEN_DEPTH = 32  # mappings and lists inside one rule's `when`; real rules nest a handful
MAX_DOCUMENT_DEPTH = MAX_WHEN_DEPTH + 8
MAX_DOCUMENT_NODES = 100_000  # counted with aliases expanded, so an alias bomb is refused too
_NUMERIC_VERSION = re.compile(r"^[0-9]+(\.[0-9]+)*$")

COMPARISONS = ("==", "!=", "<", "<=", ">", ">=")
OPERATORS = (*COMPARISONS, "in", "contains_any")


# Why a ruleset version was refused: the closed label set of fengqiao_triage_ruleset_reloads_total{reason}.
REJECTION_REASONS = ("unsigned", "unknown_key", "bad_signature", "not_newer", "invalid", "canary")


class RulesetError(ValueError):
    """A rules file that cannot be used; the message names the rule and the key, `reason` one of REJECTION_REASONS."""

    def __init__(self, message: str, reason: str = "invalid"):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Compare:
    """`field op value`, the leaf of every condition."""

    field: str
    op: str
    value: Any


@dataclass(frozen=True)
class AllOf:
    """Every condition holds."""

    items: tuple["Condition", ...]


@dataclass(frozen=True)
class AnyOf:
    """At least one condition holds."""

    items: tuple["Condition", ...]


@dataclass(frozen=True)
class Not:
    """The condition does not hold."""

    item: "Condition"


Condition = Compare | AllOf | AnyOf | Not

_MAX_RULES = 500
_Text = Annotated[str, StringConstraints(min_length=1, max_length=500)]
_Strict = ConfigDict(extra="forbid", frozen=True, strict=True)


class Then(BaseModel):
    """What a matching rule does."""

    model_config = _Strict

    level_at_least: Literal[1, 2, 3] | None = None
    urgency_at_least: Urgency | None = None
    flag: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_:]{0,63}$")] | None = None


class RuleSpec(BaseModel):
    """One rule as written in the file; `when` is parsed separately so errors can name its keys."""

    model_config = _Strict

    id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")]
    reason: _Text
    when: dict[str, Any]
    then: Then

    @field_validator("then")
    @classmethod
    def _does_something(cls, then: Then) -> Then:
        if then.level_at_least is None and then.urgency_at_least is None and then.flag is None:
            raise ValueError("needs level_at_least, urgency_at_least or flag")
        return then


class KeywordSpec(BaseModel):
    """Words in a description that set a flag, and longer phrases in which they do not count."""

    model_config = _Strict

    words: Annotated[list[Annotated[str, StringConstraints(min_length=1, max_length=20)]], Field(min_length=1)]
    not_within: list[Annotated[str, StringConstraints(min_length=2, max_length=20)]] = []


_Cue = Annotated[str, StringConstraints(min_length=1, max_length=20)]
_Regex = Annotated[str, StringConstraints(min_length=1)]


def _check_regexes(regexes: list[str]) -> list[str]:
    for index, text in enumerate(regexes):
        try:
            detection.compile_pattern(text)
        except detection.PatternError as error:
            raise ValueError(f"[{index}] {text[:40]!r}: {error}") from None
    return regexes


class PatternSpec(BaseModel):
    """One phrase pattern of a detected flag: a bounded regular expression and its weight."""

    model_config = _Strict

    id: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,47}$")]
    regex: _Regex
    weight: Annotated[float, Field(gt=0, le=10)] = 1.0
    needs_intent: bool = False  # counts only after a cue of intent or threat (扬言, 要, 准备) in its clause

    @model_validator(mode="after")
    def _compiles(self) -> "PatternSpec":
        try:
            detection.compile_pattern(self.regex)
        except detection.PatternError as error:
            raise ValueError(f"pattern {self.id!r}: regex: {error}") from None
        return self


class FlagDetectionSpec(BaseModel):
    """A flag raised from the description: its patterns, the phrases that do not count, and its threshold."""

    model_config = _Strict

    threshold: Annotated[float, Field(gt=0, le=100)] = 1.0
    patterns: Annotated[list[PatternSpec], Field(min_length=1, max_length=100)]
    exclude: Annotated[list[_Regex], Field(max_length=200)] = []

    @field_validator("exclude")
    @classmethod
    def _exclusions_compile(cls, exclude: list[str]) -> list[str]:
        return _check_regexes(exclude)

    @model_validator(mode="after")
    def _reachable(self) -> "FlagDetectionSpec":
        ids = [p.id for p in self.patterns]
        if len(ids) != len(set(ids)):
            raise ValueError(f"patterns: ids must be unique, {sorted({i for i in ids if ids.count(i) > 1})} repeat")
        if sum(p.weight for p in self.patterns) < self.threshold:
            raise ValueError(f"threshold {self.threshold} is more than all pattern weights together, so the flag can never be raised")
        return self


class DetectionSpec(BaseModel):
    """Risk language: per-flag patterns, and the cue words that negate a match or mark intent."""

    model_config = _Strict

    negation: Annotated[list[_Cue], Field(max_length=200)] = []
    not_negation: Annotated[list[_Cue], Field(max_length=500)] = []  # words that contain a cue but negate nothing: 无法, 别人
    scope_breaks: Annotated[list[_Cue], Field(max_length=200)] = []  # words after a cue that end its scope: 就, 否则
    negation_window: Annotated[int, Field(ge=1, le=50)] = 10
    intent: Annotated[list[_Cue], Field(max_length=200)] = []
    intent_window: Annotated[int, Field(ge=1, le=50)] = 12
    exclude: Annotated[list[_Regex], Field(max_length=500)] = []  # idioms and trades excluded for every flag
    flags: dict[Literal[RISK_FLAGS], FlagDetectionSpec] = {}  # type: ignore[valid-type]

    @field_validator("exclude")
    @classmethod
    def _exclusions_compile(cls, exclude: list[str]) -> list[str]:
        return _check_regexes(exclude)


def compile_detector(spec: DetectionSpec) -> detection.Detector:
    """Compile a validated detection section once, for every report the ruleset grades."""
    shared = [detection.compile_pattern(x) for x in spec.exclude]
    flags = []
    for flag, body in spec.flags.items():
        patterns = tuple(detection.Pattern(p.id, detection.compile_pattern(p.regex), p.weight, p.needs_intent) for p in body.patterns)
        exclude = detection.either(shared + [detection.compile_pattern(x) for x in body.exclude])
        any_pattern = detection.any_of([p.regex for p in patterns])  # at least one pattern, by validation
        flags.append(detection.FlagDetector(flag, patterns, any_pattern, exclude, body.threshold))
    return detection.Detector(
        tuple(flags),
        detection.literal_alternation(spec.negation),
        detection.literal_alternation(spec.not_negation),
        detection.literal_alternation(spec.scope_breaks),
        spec.negation_window,
        detection.literal_alternation(spec.intent),
        spec.intent_window,
    )


class RepeatPartiesSpec(BaseModel):
    """Window for `repeat_parties`: a party seen in another dispute within it."""

    model_config = _Strict

    window_days: Annotated[int, Field(ge=1, le=3650)] = 90


class GroupWageSpec(BaseModel):
    """Window for `group_wage_risk`: this many disputes against one employer within it."""

    model_config = _Strict

    window_days: Annotated[int, Field(ge=1, le=365)] = 7
    min_disputes: Annotated[int, Field(ge=2, le=1000)] = 3
    category: Category = "labor_wage"


# What a same matter can be told by. Closed sets: each name is one field of the report that correlation hashes, and a
# report's matter keys are made of them (correlation.matter_keys).
MATTER_IDENTIFIERS = ("id_number", "phone")
MATTER_SAME = ("category", "community")


class SameMatterSpec(BaseModel):
    """When a report is the same quarrel as an earlier dispute: a shared party identifier and the same fields, within a window."""

    model_config = _Strict

    window_days: Annotated[int, Field(ge=0, le=365)] = 30
    max_candidates: Annotated[int, Field(ge=1, le=8)] = 4
    # A party's identifiers that tie two reports to one person (keyed hashes, never in clear).
    identifiers: Annotated[list[Literal[MATTER_IDENTIFIERS]], Field(min_length=1)] = list(MATTER_IDENTIFIERS)  # type: ignore[valid-type]
    # What must also be the same: without any, every repeat party would be taken for the same matter.
    same: Annotated[list[Literal[MATTER_SAME]], Field(min_length=1)] = list(MATTER_SAME)  # type: ignore[valid-type]

    @field_validator("identifiers", "same")
    @classmethod
    def _once_each(cls, names: list[str]) -> list[str]:
        if len(set(names)) != len(names):
            raise ValueError(f"names a field more than once: {names}")
        return names


class CorrelationSpec(BaseModel):
    """Windows of the store-backed enrichment."""

    model_config = _Strict

    repeat_parties: RepeatPartiesSpec = RepeatPartiesSpec()
    group_wage_risk: GroupWageSpec = GroupWageSpec()
    same_matter: SameMatterSpec = SameMatterSpec()


class LevelSpec(BaseModel):
    """What a level means: its tier, and the urgency it implies."""

    model_config = _Strict

    tier: Tier
    urgency_at_least: Urgency = "routine"


class RulesFile(BaseModel):
    """A whole rules file, as validated on load."""

    model_config = _Strict

    version: Annotated[str, StringConstraints(pattern=r"^[0-9A-Za-z][0-9A-Za-z._-]{0,47}$")]
    description: str = ""
    default_reason: _Text
    keywords: dict[Literal[RISK_FLAGS], KeywordSpec] = {}  # type: ignore[valid-type]
    detection: DetectionSpec = DetectionSpec()
    correlation: CorrelationSpec = CorrelationSpec()
    levels: dict[Literal[1, 2, 3], LevelSpec]
    rules: Annotated[list[RuleSpec], Field(min_length=1, max_length=_MAX_RULES)]

    @field_validator("levels")
    @classmethod
    def _every_level(cls, levels: dict[int, LevelSpec]) -> dict[int, LevelSpec]:
        if set(levels) != {1, 2, 3}:
            raise ValueError("must define levels 1, 2 and 3")
        for level, spec in levels.items():
            if spec.tier != TIER_BY_LEVEL[level]:
                raise ValueError(f"level {level} must use tier {TIER_BY_LEVEL[level]} (the contract pairs them)")
        return levels

    @model_validator(mode="after")
    def _one_way_per_flag(self) -> "RulesFile":
        both = sorted(set(self.keywords) & set(self.detection.flags))
        if both:
            raise ValueError(f"keywords and detection.flags both define {', '.join(both)}: a flag is detected one way")
        return self

    @field_validator("rules")
    @classmethod
    def _unique_ids(cls, rules: list[RuleSpec]) -> list[RuleSpec]:
        seen: set[str] = set()
        for rule in rules:
            if rule.id in seen:
                raise ValueError(f"rule id {rule.id!r} is used twice")
            seen.add(rule.id)
        return rules


@dataclass(frozen=True)
class Rule:
    """A validated rule with its parsed condition."""

    id: str
    reason: str
    when: Condition
    then: Then


@dataclass(frozen=True)
class Ruleset:
    """A validated rules file, ready to compile."""

    spec: RulesFile
    rules: tuple[Rule, ...]
    source_text: str
    detector: detection.Detector = detection.EMPTY

    @property
    def version(self) -> str:
        """Return the version stamped in the file."""
        return self.spec.version

    @property
    def engine_name(self) -> str:
        """Name the durable-rules ruleset; versioned because a name cannot be registered twice."""
        return f"triage@{self.version}"


def parse_condition(node: Any, where: str) -> Condition:
    """Parse one `when` node; `where` is its key path, used in every error."""
    if not isinstance(node, dict) or len(node) != 1:
        raise RulesetError(f"{where}: a condition is a mapping with exactly one key (all, any, not or a field)")
    ((key, body),) = node.items()
    if key in ("all", "any"):
        if not isinstance(body, list) or not body:
            raise RulesetError(f"{where}.{key}: expects a non-empty list of conditions")
        items = tuple(parse_condition(item, f"{where}.{key}[{i}]") for i, item in enumerate(body))
        return AllOf(items) if key == "all" else AnyOf(items)
    if key == "not":
        return Not(parse_condition(body, f"{where}.not"))
    return _parse_comparison(key, body, f"{where}.{key}")


def _parse_comparison(field: str, body: Any, where: str) -> Compare:
    spec = FIELDS.get(field)
    if spec is None:
        raise RulesetError(f"{where}: unknown field {field!r} (known: {', '.join(FIELDS)})")
    if not isinstance(body, dict) or len(body) != 1:
        raise RulesetError(f"{where}: expects one operator, e.g. {{'>=': 3}}")
    ((op, value),) = body.items()
    if op not in OPERATORS:
        raise RulesetError(f"{where}: unknown operator {op!r} (known: {', '.join(OPERATORS)})")
    _check_operand(spec, op, value, f"{where}.{op}")
    return Compare(field, op, tuple(value) if isinstance(value, list) else value)


def _check_operand(spec: FieldSpec, op: str, value: Any, where: str) -> None:
    if spec.kind == "names":
        if op != "contains_any":
            raise RulesetError(f"{where}: a list field takes only contains_any")
        _check_names(spec, value, where)
    elif op == "contains_any":
        raise RulesetError(f"{where}: contains_any needs a list field (flags, vulnerable)")
    elif op == "in":
        if not isinstance(value, list) or not value:
            raise RulesetError(f"{where}: expects a non-empty list")
        for i, item in enumerate(value):
            _check_scalar(spec, op, item, f"{where}[{i}]")
    else:
        _check_scalar(spec, op, value, where)


def _check_names(spec: FieldSpec, value: Any, where: str) -> None:
    if not isinstance(value, list) or not value:
        raise RulesetError(f"{where}: expects a non-empty list")
    for item in value:
        if item not in spec.values:
            raise RulesetError(f"{where}: unknown value {item!r} (known: {', '.join(spec.values)})")


def _check_scalar(spec: FieldSpec, op: str, value: Any, where: str) -> None:
    if spec.kind == "name":
        if op not in ("==", "!=", "in"):
            raise RulesetError(f"{where}: a name field takes ==, != or in")
        if value not in spec.values:
            raise RulesetError(f"{where}: unknown value {value!r}")
        return
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not numeric or (spec.kind == "int" and not isinstance(value, int)):
        raise RulesetError(f"{where}: expects {'an integer' if spec.kind == 'int' else 'a number'}, got {type(value).__name__}")


def _pydantic_errors(error: ValidationError, raw: dict[str, Any]) -> str:
    rules = raw.get("rules") if isinstance(raw.get("rules"), list) else []
    lines = []
    for item in error.errors(include_url=False, include_input=False):
        loc = list(item["loc"])
        if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
            rule = rules[loc[1]] if loc[1] < len(rules) and isinstance(rules[loc[1]], dict) else {}
            label = f"rule {rule.get('id', '?')!r} (rules[{loc[1]}])"
            loc = loc[2:]
        else:
            label = "file"
        lines.append(f"{label}: {'.'.join(str(p) for p in loc) or '(top)'}: {item['msg']}")
    return "; ".join(lines)


def _load(text: str) -> dict[str, Any]:
    """Parse a rules text within the size limit; a nesting too deep for Python becomes a RulesetError."""
    size = len(text.encode("utf-8", errors="replace"))
    if size > MAX_TEXT_BYTES:
        raise RulesetError(f"file: {size} bytes, larger than the {MAX_TEXT_BYTES // 1024} kB limit")
    try:
        return yaml_mapping(text)
    except ValueError as error:
        raise RulesetError(f"file: {error}") from None
    except RecursionError:
        raise RulesetError("file: nested too deep to parse") from None


def version_key(version: str) -> tuple[int, ...]:
    """Return a version's dotted numbers for ordering; trailing zeros do not count (2026.12 == 2026.12.0)."""
    if not _NUMERIC_VERSION.match(version):
        raise RulesetError(f"version: {version!r} is not dotted numbers such as 2026.11.1, so it cannot be ordered")
    parts = [int(part) for part in version.split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def check_newer(text: str, running: str | None) -> None:
    """Refuse, before any validation or compile, a text whose version is not newer than the running one."""
    version = _load(text).get("version")
    if not isinstance(version, str):
        raise RulesetError("file: version: must be a quoted string such as \"2026.11.1\"")
    if version_key(version) <= (version_key(running) if running is not None else ()):
        raise RulesetError(f"version: {version} is not newer than the running {running}", reason="not_newer")


def _children(node: Any) -> list[Any]:
    if isinstance(node, dict):
        return [v for v in node.values() if isinstance(v, (dict, list))]
    if isinstance(node, list):
        return [v for v in node if isinstance(v, (dict, list))]
    return []


def measure(root: Any) -> tuple[int, int]:
    """Return the nesting depth and the alias-expanded node count of parsed YAML, without recursion.

    YAML aliases share nodes, so sizes are memoised per node (an alias bomb is counted, not walked);
    an alias that contains itself is refused.
    """
    done: dict[int, tuple[int, int]] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            shapes = [done[id(child)] for child in _children(node)]
            leaves = len(node) - len(shapes)
            done[key] = (1 + max((d for d, _ in shapes), default=0), 1 + leaves + sum(n for _, n in shapes))
            open_nodes.discard(key)
        elif key in open_nodes:
            # Depth-first: a node still open when met again is its own ancestor.
            raise RulesetError("file: an alias refers to a mapping or list that contains it")
        elif key not in done:
            open_nodes.add(key)
            stack.append((node, True))
            stack.extend((child, False) for child in _children(node))
    return done.get(id(root), (0, 1))


def _check_shape(raw: dict[str, Any]) -> None:
    rules = raw.get("rules") if isinstance(raw.get("rules"), list) else []
    for index, rule in enumerate(rules[:_MAX_RULES]):
        if isinstance(rule, dict) and isinstance(rule.get("when"), (dict, list)):
            depth, _ = measure(rule["when"])
            if depth > MAX_WHEN_DEPTH:
                label = f"rule {str(rule.get('id', '?'))[:64]!r} (rules[{index}])"
                raise RulesetError(f"{label}: when: nested {depth} deep, deeper than the limit of {MAX_WHEN_DEPTH}")
    depth, nodes = measure(raw)
    if depth > MAX_DOCUMENT_DEPTH:
        raise RulesetError(f"file: nested {depth} deep, deeper than the limit of {MAX_DOCUMENT_DEPTH}")
    if nodes > MAX_DOCUMENT_NODES:
        raise RulesetError(f"file: {nodes} values with aliases expanded, more than the limit of {MAX_DOCUMENT_NODES}")


def parse_ruleset(text: str) -> Ruleset:
    """Validate a rules file's text; raise RulesetError naming the rule and key on any problem."""
    raw = _load(text)
    _check_shape(raw)
    try:
        spec = RulesFile.model_validate(raw)
    except ValidationError as error:
        raise RulesetError(_pydantic_errors(error, raw)) from None
    rules = []
    for index, rule in enumerate(spec.rules):
        try:
            when = parse_condition(rule.when, "when")
        except RulesetError as error:
            raise RulesetError(f"rule {rule.id!r} (rules[{index}]): {error}") from None
        rules.append(Rule(rule.id, rule.reason, when, rule.then))
    return Ruleset(spec, tuple(rules), text, compile_detector(spec.detection))


def load_ruleset(path: Path) -> Ruleset:
    """Read and validate a rules file."""
    return parse_ruleset(path.read_text(encoding="utf-8"))


DEFAULT_RULES = Path(__file__).parent / "rules" / "default.yaml"
