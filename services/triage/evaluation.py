"""Measure a ruleset's risk-language detection against a labelled corpus: per-flag precision, recall, F1, and the misses."""

import json
from dataclasses import dataclass, field
from pathlib import Path

from services.triage.grading import detect_text
from services.triage.ruleset import RISK_FLAGS, Ruleset


@dataclass(frozen=True)
class Example:
    """One labelled sentence: its text and the flags a reader would raise for it."""

    line: int
    text: str
    flags: frozenset[str]


@dataclass
class Score:
    """Counts of one flag (or of all of them together, for the micro average)."""

    true_positives: int = 0
    false_positives: int = 0
    false_negatives: int = 0

    @property
    def precision(self) -> float:
        """Return the share of raised flags that were expected (1.0 when none were raised)."""
        raised = self.true_positives + self.false_positives
        return self.true_positives / raised if raised else 1.0

    @property
    def recall(self) -> float:
        """Return the share of expected flags that were raised (1.0 when none were expected)."""
        expected = self.true_positives + self.false_negatives
        return self.true_positives / expected if expected else 1.0

    @property
    def f1(self) -> float:
        """Return the harmonic mean of precision and recall."""
        total = self.precision + self.recall
        return 2 * self.precision * self.recall / total if total else 0.0


@dataclass(frozen=True)
class Miss:
    """A sentence where one flag was wrongly raised (false_positive) or wrongly not (false_negative)."""

    kind: str
    flag: str
    example: Example
    phrases: tuple[str, ...] = ()


@dataclass
class Evaluation:
    """Per-flag and micro-averaged scores over a corpus, with every miss."""

    flags: dict[str, Score]
    micro: Score
    misses: list[Miss] = field(default_factory=list)
    sentences: int = 0


def load_corpus(path: Path) -> list[Example]:
    """Read a JSON-lines corpus of {"text": ..., "flags": [...]}; raise ValueError naming the line of a bad one."""
    examples = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            text, flags = item["text"], frozenset(item["flags"])
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{path}:{number}: expected {{\"text\": ..., \"flags\": [...]}}: {error}") from None
        unknown = flags - set(RISK_FLAGS)
        if unknown or not isinstance(text, str) or not text:
            raise ValueError(f"{path}:{number}: unknown flags {sorted(unknown)} or empty text")
        examples.append(Example(number, text, flags))
    return examples


def evaluate(ruleset: Ruleset, examples: list[Example]) -> Evaluation:
    """Detect every example with the ruleset and score the flags it can detect."""
    scored = sorted(set(ruleset.spec.keywords) | set(ruleset.spec.detection.flags))
    result = Evaluation({flag: Score() for flag in scored}, Score(), sentences=len(examples))
    for example in examples:
        found, detections = detect_text(example.text, ruleset)
        for flag in scored:
            expected, raised = flag in example.flags, flag in found
            score = result.flags[flag]
            if expected and raised:
                score.true_positives += 1
                result.micro.true_positives += 1
            elif raised:
                score.false_positives += 1
                result.micro.false_positives += 1
                phrases = tuple(f"{d.pattern}:{d.phrase}" for d in detections if d.flag == flag)
                result.misses.append(Miss("false_positive", flag, example, phrases))
            elif expected:
                score.false_negatives += 1
                result.micro.false_negatives += 1
                result.misses.append(Miss("false_negative", flag, example))
    return result


def report_lines(result: Evaluation) -> list[str]:
    """Render an evaluation as a table and a list of misses."""
    lines = [f"{result.sentences} sentences", f"{'flag':<20} {'tp':>4} {'fp':>4} {'fn':>4} {'precision':>9} {'recall':>7} {'f1':>6}"]
    for name, score in [*result.flags.items(), ("micro", result.micro)]:
        lines.append(
            f"{name:<20} {score.true_positives:>4} {score.false_positives:>4} {score.false_negatives:>4} "
            f"{score.precision:>9.3f} {score.recall:>7.3f} {score.f1:>6.3f}"
        )
    for miss in result.misses:
        matched = f"  [{', '.join(miss.phrases)}]" if miss.phrases else ""
        lines.append(f"{miss.kind} {miss.flag} line {miss.example.line}: {miss.example.text}{matched}")
    return lines
