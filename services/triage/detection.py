"""Risk language in a report's description: phrase patterns per flag, with exclusions, negation and intent cues.

Pure: (text, compiled detector) -> detections. The patterns are data in the rules file (`detection:`);
this module only validates them, compiles them once per ruleset, and applies them clause by clause.
Regular expressions only, no word segmentation: the patterns are short, the texts are short, and a
segmenter would add a dependency and a per-report cost (see docs/risk-language.md).
"""

import re
from dataclasses import dataclass

try:  # Python 3.11 moved the parser; the names are the same.
    import re._parser as _sre_parse  # type: ignore[import-not-found]
    from re._constants import MAXREPEAT  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - older Pythons
    import sre_parse as _sre_parse  # type: ignore[no-redef]
    from sre_constants import MAXREPEAT  # type: ignore[no-redef]

MAX_REGEX_CHARS = 300
MAX_REPEAT_BOUND = 30  # the widest gap a pattern may leave between two words, in characters
# Repeats of single characters, each at most MAX_REPEAT_BOUND, none nested: a match attempt at one position
# tries at most the product of (max + 1) over them. Bounding that product keeps a search linear in the text.
MAX_BACKTRACK_STEPS = 1000
# Clauses end at these; a negation or an intent cue never reaches across one.
CLAUSE_BREAKS = re.compile(r"[，,。．.！!？?；;：:\n\r]+")
_MASK = "\0"


class PatternError(ValueError):
    """A regular expression the detector refuses: not compilable, or able to run in more than linear time."""


_SINGLE = ("LITERAL", "NOT_LITERAL", "IN", "ANY", "CATEGORY")


def _walk(parsed, inside_repeat: bool) -> int:  # noqa: ANN001 - sre's parse tree is untyped
    """Check a parsed pattern's shape; return the product of (max + 1) over its repeats of a character."""
    steps = 1
    for op, value in parsed:
        name = str(op)
        if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, high, body = value
            if high == MAXREPEAT or high > MAX_REPEAT_BOUND:
                raise PatternError(f"unbounded or wide repeat: write a bounded one such as {{0,8}} (at most {MAX_REPEAT_BOUND})")
            if inside_repeat:
                raise PatternError("nested quantifier: a repeat inside a repeat can take exponential time")
            if high > 1:
                # (a|aa){1,30} backtracks exponentially: only one character at a time may repeat.
                if len(body) != 1 or str(body[0][0]) not in _SINGLE:
                    raise PatternError("only a single character or class may repeat more than once, e.g. [^，。]{0,6}; (…){2,} is refused")
                steps *= high + 1
            else:
                _walk(body, True)
        elif name in ("GROUPREF", "GROUPREF_EXISTS"):
            raise PatternError("backreferences are not allowed")
        elif name == "SUBPATTERN":
            steps *= _walk(value[-1], inside_repeat)
        elif name in ("ASSERT", "ASSERT_NOT"):
            steps *= _walk(value[1], inside_repeat)
        elif name == "BRANCH":
            steps *= max(_walk(branch, inside_repeat) for branch in value[1])
        elif name == "ATOMIC_GROUP":
            steps *= _walk(value, inside_repeat)
    return steps


# A class wider than this (a range such as [一-龥]) is not spelled out: its pattern gets no first-character test.
_MAX_FIRST_CHARACTERS = 512


def _first(parsed) -> tuple[frozenset[str] | None, bool]:  # noqa: ANN001 - sre's parse tree is untyped
    """Return the characters a match of a parsed sequence can start with (None: any) and whether it can match nothing."""
    found: set[str] = set()
    for op, value in parsed:
        name = str(op)
        if name in ("AT", "ASSERT", "ASSERT_NOT"):
            continue  # zero-width: the next item consumes the first character (a lookaround only narrows it)
        if name == "LITERAL":
            return frozenset(found | {chr(value)}), False
        if name == "IN":
            members = _class_members(value)
            return (None if members is None else frozenset(found | members)), False
        if name in ("SUBPATTERN", "ATOMIC_GROUP", "BRANCH", "MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            if name == "SUBPATTERN":
                _, add_flags, _, body = value
                if add_flags & re.IGNORECASE:
                    return None, False
                first, empty = _first(body)
            elif name == "ATOMIC_GROUP":
                first, empty = _first(value)
            elif name == "BRANCH":
                firsts = [_first(branch) for branch in value[1]]
                if any(f is None for f, _ in firsts):
                    return None, False
                first, empty = frozenset().union(*(f for f, _ in firsts if f)), any(e for _, e in firsts)
            else:
                low, _, body = value
                first, empty = _first(body)
                empty = empty or low == 0
            if first is None:
                return None, False
            found |= first
            if not empty:
                return frozenset(found), False
            continue
        return None, False  # any character, a negated class, a category, a reference: it can start anywhere
    return frozenset(found), True


def _class_members(items) -> set[str] | None:  # noqa: ANN001
    members: set[str] = set()
    for op, value in items:
        name = str(op)
        if name == "LITERAL":
            members.add(chr(value))
        elif name == "RANGE" and value[1] - value[0] < _MAX_FIRST_CHARACTERS:
            members.update(chr(c) for c in range(value[0], value[1] + 1))
        else:
            return None  # NEGATE, a category, a wide range
    return members


def first_characters(patterns: list[re.Pattern[str]]) -> frozenset[str] | None:
    """Return every character a match of any of these patterns can start with; None when one of them can start with any."""
    found: set[str] = set()
    for pattern in patterns:
        if pattern.flags & re.IGNORECASE:
            return None
        first, empty = _first(_sre_parse.parse(pattern.pattern))
        if first is None or empty or len(first) > _MAX_FIRST_CHARACTERS:
            return None
        found |= first
    return frozenset(found)


def compile_pattern(text: str) -> re.Pattern[str]:
    """Compile a detection regex, refusing long, empty-matching, backreferencing or nested-repeat patterns."""
    if len(text) > MAX_REGEX_CHARS:
        raise PatternError(f"{len(text)} characters, longer than the limit of {MAX_REGEX_CHARS}")
    try:
        compiled = re.compile(text)
        steps = _walk(_sre_parse.parse(text), False)
    except re.error as error:
        raise PatternError(f"does not compile: {error}") from None
    if steps > MAX_BACKTRACK_STEPS:
        raise PatternError(f"its repeats can try {steps} ways per position, more than {MAX_BACKTRACK_STEPS}: narrow the gaps")
    if compiled.fullmatch("") is not None or compiled.search("") is not None:
        raise PatternError("matches the empty string, so it would match every text")
    return compiled


def literal_alternation(words: list[str] | tuple[str, ...]) -> re.Pattern[str] | None:
    """Compile cue words into one literal alternation, longest first so 没有 wins over 没."""
    if not words:
        return None
    return re.compile("|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True)))


def either(patterns: list[re.Pattern[str]]) -> re.Pattern[str] | None:
    """Join compiled patterns into one alternation (None for none)."""
    return re.compile("|".join(f"(?:{p.pattern})" for p in patterns)) if patterns else None


def any_of(patterns: list[re.Pattern[str]]) -> re.Pattern[str]:
    """Join a flag's patterns into one alternation that tries its branches only where a match can start."""
    alternation = "|".join(f"(?:{p.pattern})" for p in patterns)
    first = first_characters(patterns)
    if first is None:
        return re.compile(alternation)
    # Python's re tries every branch at every position of the text; the lookahead, one class test in C, lets it try
    # them only at the characters a match can start with (the four shipped flags: 11.8 -> 1.7 us a description).
    return re.compile(f"(?=[{''.join(re.escape(c) for c in sorted(first))}])(?:{alternation})")


@dataclass(frozen=True)
class Pattern:
    """One compiled phrase pattern of a flag."""

    id: str
    regex: re.Pattern[str]
    weight: float
    needs_intent: bool


@dataclass(frozen=True)
class FlagDetector:
    """A flag's compiled patterns, its exclusions, and the weight at which it is raised."""

    flag: str
    patterns: tuple[Pattern, ...]
    any_pattern: re.Pattern[str]  # one pass over the whole text decides whether to look closer
    exclude: re.Pattern[str] | None
    threshold: float


@dataclass(frozen=True)
class Detector:
    """A ruleset's compiled detection section."""

    flags: tuple[FlagDetector, ...]
    negation: re.Pattern[str] | None
    not_negation: re.Pattern[str] | None
    scope_breaks: re.Pattern[str] | None
    negation_window: int
    intent: re.Pattern[str] | None
    intent_window: int


EMPTY = Detector((), None, None, None, 0, None, 0)


@dataclass(frozen=True)
class Detection:
    """A phrase that raised a flag: which pattern matched, and the words it matched."""

    flag: str
    pattern: str
    phrase: str


def _mask(pattern: re.Pattern[str] | None, text: str) -> str:
    # Same length, so positions in the masked text are positions in the clause.
    return pattern.sub(lambda m: _MASK * len(m.group()), text) if pattern else text


def _negated(clause: str, start: int, detector: Detector) -> bool:
    """Tell whether a negation cue before `start`, within the window and not cut off by a scope break, cancels a match."""
    if detector.negation is None:
        return False
    window_start = max(0, start - detector.negation_window)
    before = clause[window_start:start]
    last = None
    for cue in detector.negation.finditer(before):
        last = cue
    if last is None:
        return False
    between = before[last.end():]
    return not (detector.scope_breaks and detector.scope_breaks.search(between))


def _intended(clause: str, match: re.Match[str], detector: Detector) -> bool:
    """Tell whether an intent or threat cue comes before the match in its clause, or inside it."""
    if detector.intent is None:
        return False
    window = clause[max(0, match.start() - detector.intent_window):match.end()]
    return detector.intent.search(window) is not None


def _clauses(text: str) -> list[str]:
    return [c for c in CLAUSE_BREAKS.split(text) if c]


def detect(text: str, detector: Detector) -> tuple[Detection, ...]:
    """Return the detections of every flag whose matched, un-negated pattern weights reach its threshold."""
    found: list[Detection] = []
    clauses: list[tuple[str, str]] | None = None
    for flag in detector.flags:
        if flag.any_pattern.search(text) is None:
            continue  # the common case: no pattern of this flag anywhere
        if clauses is None:
            # Each clause twice: as written, and with words that only look like negation (无法, 别人) masked.
            clauses = [(c, _mask(detector.not_negation, c)) for c in _clauses(text)]
        weights: dict[str, float] = {}
        hits: list[Detection] = []
        for clause, for_negation in clauses:
            masked = _mask(flag.exclude, clause)
            if flag.any_pattern.search(masked) is None:
                continue  # no pattern of the flag in this clause: the rest of the text held the match
            for pattern in flag.patterns:
                for match in pattern.regex.finditer(masked):
                    if _negated(for_negation, match.start(), detector):
                        continue
                    if pattern.needs_intent and not _intended(for_negation, match, detector):
                        continue
                    weights[pattern.id] = max(weights.get(pattern.id, 0.0), pattern.weight)
                    hits.append(Detection(flag.flag, pattern.id, clause[match.start():match.end()]))
        # A pattern counts once however often it matches: repetition is not more evidence.
        if hits and sum(weights.values()) >= flag.threshold:
            found.extend(dict.fromkeys(hits))
    return tuple(found)


def detected_flags(detections: tuple[Detection, ...]) -> frozenset[str]:
    """Return the flags the detections raise."""
    return frozenset(d.flag for d in detections)
