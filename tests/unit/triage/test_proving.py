"""A ruleset version serves only when it is newer, within limits and through the canary; refusing one costs nothing lasting."""

import logging

import pytest
from prometheus_client import CollectorRegistry

from services.runtime.heap import return_freed_heap
from services.triage import canary
from services.triage.app import rules_holder
from services.triage.metrics import TriageMetrics
from services.triage.ruleset import DEFAULT_RULES, REJECTION_REASONS, RulesetError, check_newer
from tests.support.samples import FLAG_RULES

TEXT = DEFAULT_RULES.read_text(encoding="utf-8")
RUNNING = "2026.11.1"


def versioned(version: str, text: str = TEXT) -> str:
    return text.replace(f'version: "{RUNNING}"', f'version: "{version}"')


def with_rules(version: str, rules: str) -> str:
    return versioned(version) + rules + "\n"




def deep_rule(depth: int) -> str:
    # Each item nests the one before it through an alias: a 5,000-deep condition in a few lines per level,
    # under the YAML parser's own nesting limit.
    items = ['&c0 {party_count: {">=": 3}}'] + [f"&c{i} {{not: *c{i - 1}}}" for i in range(1, depth)]
    listed = "".join(f"\n          - {item}" for item in items)
    return f"""
  - id: DEEP
    reason: 嵌套过深
    when:
      any:{listed}
    then: {{level_at_least: 2}}"""


# Shallow but wide: each level lists the one before ten times, a million conditions once aliases are expanded.
LAUGHS = "".join(f"\n          - &l{i} {{any: [{', '.join([f'*l{i - 1}'] * 10)}]}}" for i in range(1, 7))
ALIAS_BOMB = f"""
  - id: LAUGHS
    reason: 别名炸弹
    when:
      any:
          - &l0 {{party_count: {{">=": 3}}}}{LAUGHS}
    then: {{level_at_least: 2}}"""
SELF_REFERENCE = """
  - id: LOOP
    reason: 自己引用自己
    when: &loop {any: [*loop]}
    then: {level_at_least: 2}"""
PADDING = "\n# " + "填" * 100_000 + "\n"

# (case, text offered while 2026.11.1 serves, reason counted, words the logged reason must contain)
REFUSED = [
    ("older version", versioned("2026.10.9"), "not_newer", ["version: 2026.10.9 is not newer than the running 2026.11.1"]),
    ("older by numbers, newer by letters", versioned("2026.9.1"), "not_newer", ["not newer than the running 2026.11.1"]),
    ("same version, other content", versioned(RUNNING, TEXT.replace("三次以上调解无效", "三次调解无效")), "not_newer", ["not newer than the running"]),
    ("same version, trailing zero", versioned("2026.11.1.0"), "not_newer", ["not newer than the running"]),
    ("non-numeric version", versioned("2026.12-beta"), "invalid", ["'2026.12-beta' is not dotted numbers"]),
    ("unquoted version", TEXT.replace(f'version: "{RUNNING}"', "version: 2026.12"), "invalid", ["version: must be a quoted string"]),
    ("70 flag rules", with_rules("2026.11.70", FLAG_RULES), "canary", ["canary: report 'canary-most-", "flags: List should have at most 64 items"]),
    ("5,000-deep nesting", with_rules("2026.11.2", deep_rule(5000)), "invalid", ["rule 'DEEP' (rules[", "nested", "deeper than the limit of 32"]),
    ("flow nesting past the parser", with_rules("2026.11.2", deep_rule(2) + "\n  - " + "[" * 5000 + "]" * 5000), "invalid", ["not valid YAML"]),
    ("alias bomb", with_rules("2026.11.2", ALIAS_BOMB), "invalid", ["more than the limit of 100000"]),
    ("alias containing itself", with_rules("2026.11.2", SELF_REFERENCE), "invalid", ["refers to a mapping or list that contains it"]),
    ("oversized text", versioned("2026.11.2") + PADDING, "invalid", ["larger than the 256 kB limit"]),
]


def holder_and_registry():
    registry = CollectorRegistry()
    return rules_holder(TEXT, TriageMetrics(registry)), registry


def rejected(registry: CollectorRegistry, reason: str | None = None) -> float:
    reasons = [reason] if reason else REJECTION_REASONS
    return sum(
        registry.get_sample_value("fengqiao_triage_ruleset_reloads_total", {"result": "rejected", "origin": "topic", "reason": r}) or 0
        for r in reasons
    )


def test_refused_versions_leave_the_running_one_serving_with_a_reason(caplog):
    holder, registry = holder_and_registry()
    for case, text, reason, words in REFUSED:
        caplog.clear()
        before = rejected(registry, reason)
        with caplog.at_level(logging.ERROR, logger="services.runtime.reload"):
            assert holder.offer(text, "topic") is False, case
        assert holder.version == RUNNING, case
        assert rejected(registry, reason) == before + 1, case
        for word in words:
            assert word in caplog.text, f"{case}: {caplog.text[:300]}"
        assert len(caplog.text) < 2000, f"{case}: the text is not logged"
    assert rejected(registry) == len(REFUSED)


# (case, versions offered in turn, version serving after them)
ORDERED = [
    ("a newer version is swapped in", ["2026.11.2"], "2026.11.2"),
    ("numbers, not letters, order versions", ["2026.11.10", "2026.11.9"], "2026.11.10"),
    ("a new year is newer", ["2027.1"], "2027.1"),
    ("going back after going forward is refused", ["2026.12.1", "2026.11.5"], "2026.12.1"),
]


@pytest.mark.parametrize("case, versions, serving", ORDERED, ids=[row[0] for row in ORDERED])
def test_only_newer_versions_are_swapped_in(case, versions, serving):
    holder, _ = holder_and_registry()
    for version in versions:
        holder.offer(versioned(version), "file")
    assert holder.version == serving
    assert holder.current.version == serving


def test_the_default_rules_pass_the_canary_and_a_flag_flood_does_not():
    graders = canary.ProvenGraders()
    assert graders(TEXT).version == RUNNING
    with pytest.raises(RulesetError, match="canary"):
        graders(with_rules("2026.11.70", FLAG_RULES))


def test_a_canary_failing_text_is_compiled_once_however_often_it_is_offered(monkeypatch):
    holder, registry = holder_and_registry()
    compiled = []
    real = canary.Grader
    monkeypatch.setattr(canary, "Grader", lambda ruleset: compiled.append(ruleset.version) or real(ruleset))
    for _ in range(5):
        assert holder.offer(with_rules("2026.11.70", FLAG_RULES), "topic") is False
    assert compiled == ["2026.11.70"]
    assert rejected(registry, "canary") == 5
    # Texts refused by the cheap checks are never compiled.
    for _, text, _, _ in REFUSED:
        holder.offer(text, "topic")
    assert compiled == ["2026.11.70"]


def test_a_first_ruleset_with_a_version_that_cannot_be_ordered_does_not_start():
    with pytest.raises(RulesetError, match="not dotted numbers"):
        check_newer(versioned("latest"), None)
    with pytest.raises(RulesetError, match="not dotted numbers"):
        rules_holder(versioned("latest"), TriageMetrics(CollectorRegistry()))


def _anonymous_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("RssAnon")) / 1024


def refused_texts(count: int):
    """Yield distinct texts that must all be refused: older versions, and newer ones over a limit or failing the canary's parse."""
    for n in range(count):
        kind = n % 4
        if kind == 0:
            yield versioned(f"2026.10.{n}")
        elif kind == 1:
            yield versioned(f"2025.{n}.1", TEXT.replace("三次以上调解无效", f"三次以上调解无效{n}"))
        elif kind == 2:
            yield with_rules(f"2026.12.{n}", deep_rule(40))
        else:
            yield versioned(f"2026.12.{n}") + PADDING


async def test_a_thousand_refused_texts_cost_no_lasting_memory():
    holder, registry = holder_and_registry()
    for text in refused_texts(20):  # warm up parsers and caches once
        holder.offer(text, "topic")
    # Freed C memory is given back as the services' heap trim does; what stays is what is held.
    await return_freed_heap()
    before = _anonymous_mb()
    for text in refused_texts(1000):
        assert holder.offer(text, "topic") is False
    await return_freed_heap()
    grown = _anonymous_mb() - before
    assert holder.version == RUNNING
    assert rejected(registry) == 1020
    # Before the checks came first, each of these was compiled (and older ones served): about 220 MB.
    assert grown < 20, f"resident memory grew {grown:.1f} MB"
