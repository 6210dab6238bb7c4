"""Rules files are validated on load with errors that name the rule and the key; conditions compile faithfully."""

import json
import textwrap

import pytest
import yaml

from schemas.disputes import DisputeReported
from services.triage.grading import Features, Grader
from services.triage.ruleset import DEFAULT_RULES, RulesetError, parse_ruleset
from tests.support.samples import report_payload

BASE = yaml.safe_load(DEFAULT_RULES.read_text(encoding="utf-8"))


def with_rule(rule: dict, **top) -> str:
    document = dict(BASE) | {"rules": [rule]} | top
    return yaml.safe_dump(document, allow_unicode=True)


def rule(when, then=None, id="R1"):
    return {"id": id, "reason": "测试规则", "when": when, "then": {"level_at_least": 2} if then is None else then}


# (case, rules file text, words that must be in the error)
BROKEN = [
    ("not YAML", "version: [unclosed", ["not valid YAML"]),
    ("not a mapping", "- a\n- b\n", ["top level must be a mapping"]),
    ("unknown top-level key", with_rule(rule({"party_count": {">=": 3}}), script="rm -rf /"), ["file: script", "Extra inputs"]),
    ("unknown rule key", with_rule(rule({"party_count": {">=": 3}}) | {"priority": 1}), ["rule 'R1' (rules[0]): priority", "Extra inputs"]),
    ("unknown then key", with_rule(rule({"party_count": {">=": 3}}, {"level": 3})), ["rule 'R1' (rules[0]): then.level", "Extra inputs"]),
    ("then does nothing", with_rule(rule({"party_count": {">=": 3}}, {})), ["rule 'R1'", "then", "needs level_at_least"]),
    ("level 4", with_rule(rule({"party_count": {">=": 3}}, {"level_at_least": 4})), ["rule 'R1'", "then.level_at_least"]),
    ("bad operator", with_rule(rule({"party_count": {"=~": 3}})), ["rule 'R1' (rules[0]): when.party_count", "unknown operator '=~'"]),
    ("unknown field", with_rule(rule({"party_size": {">=": 3}})), ["rule 'R1'", "when.party_size", "unknown field 'party_size'"]),
    ("nested unknown field", with_rule(rule({"any": [{"category": {"==": "neighbor"}}, {"risk.knife": {"==": 1}}]})), ["when.any[1].risk.knife", "unknown field"]),
    ("string for a number", with_rule(rule({"party_count": {">=": "3"}})), ["when.party_count.>=", "expects an integer, got str"]),
    ("bool for a number", with_rule(rule({"amount_cny": {">=": True}})), ["when.amount_cny.>=", "expects a number, got bool"]),
    ("unknown category", with_rule(rule({"category": {"==": "gambling"}})), ["when.category.==", "unknown value 'gambling'"]),
    ("ordering a name", with_rule(rule({"category": {">": "neighbor"}})), ["when.category.>", "takes ==, != or in"]),
    ("unknown flag", with_rule(rule({"flags": {"contains_any": ["arson"]}})), ["when.flags.contains_any", "unknown value 'arson'"]),
    ("equality on a list", with_rule(rule({"flags": {"==": "cross_region"}})), ["when.flags.==", "only contains_any"]),
    ("contains_any on a number", with_rule(rule({"party_count": {"contains_any": [1]}})), ["contains_any needs a list field"]),
    ("empty any", with_rule(rule({"any": []})), ["when.any", "non-empty list"]),
    ("two keys in one condition", with_rule(rule({"party_count": {">=": 3}, "category": {"==": "other"}})), ["exactly one key"]),
    ("two operators", with_rule(rule({"party_count": {">=": 3, "<=": 9}})), ["when.party_count", "one operator"]),
    ("duplicate ids", with_rule(rule({"party_count": {">=": 3}}), rules=[rule({"party_count": {">=": 3}})] * 2), ["rule id 'R1' is used twice"]),
    ("tier out of pairing", with_rule(rule({"party_count": {">=": 3}}), levels={1: {"tier": "on_site"}, 2: {"tier": "joint_consultation"}, 3: {"tier": "mediation_room"}}), ["level 2 must use tier mediation_room"]),
    ("missing version", yaml.safe_dump({k: v for k, v in BASE.items() if k != "version"}, allow_unicode=True), ["file: version", "Field required"]),
    ("python tag", "version: !!python/object/apply:os.system ['true']\n", ["not valid YAML"]),
    ("keyword list for an unknown flag", with_rule(rule({"party_count": {">=": 3}}), keywords={"arson": {"words": ["火"]}}), ["file: keywords.arson"]),
]


def same_matter(**criteria) -> str:
    correlation = BASE["correlation"] | {"same_matter": BASE["correlation"]["same_matter"] | criteria}
    return with_rule(rule({"party_count": {">=": 3}}), correlation=correlation)


# The same matter's criteria are closed sets: a name correlation cannot hash is refused, as is matching on nothing.
BROKEN += [
    ("same matter by an unknown identifier", same_matter(identifiers=["name"]), ["correlation.same_matter.identifiers.0", "'id_number' or 'phone'"]),
    ("same matter by an unknown field", same_matter(same=["category", "street"]), ["correlation.same_matter.same.1", "'category' or 'community'"]),
    ("same matter by no identifier", same_matter(identifiers=[]), ["correlation.same_matter.identifiers", "at least 1"]),
    ("same matter with nothing else the same", same_matter(same=[]), ["correlation.same_matter.same", "at least 1"]),
    ("a field named twice", same_matter(same=["category", "category"]), ["correlation.same_matter.same", "more than once"]),
    ("a single identifier, not a list", same_matter(identifiers="phone"), ["correlation.same_matter.identifiers"]),
]


@pytest.mark.parametrize("case, text, words", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_rules_files_are_rejected_with_the_rule_and_key(case, text, words):
    with pytest.raises(RulesetError) as caught:
        parse_ruleset(text)
    for word in words:
        assert word in str(caught.value), str(caught.value)


def test_the_default_rules_file_is_valid_and_versioned():
    ruleset = parse_ruleset(DEFAULT_RULES.read_text(encoding="utf-8"))
    assert ruleset.version == BASE["version"]
    assert ruleset.engine_name == f"triage@{BASE['version']}"


def grade_with(when, **overrides):
    grader = Grader(parse_ruleset(with_rule(rule(when))))
    report = DisputeReported.model_validate_json(json.dumps(report_payload(**overrides)))
    return grader.grade(report, Features()).level


# (case, condition, report overrides, matches)
CONDITIONS = [
    ("== matches", {"category": {"==": "neighbor"}}, {"category": "neighbor"}, True),
    ("!= matches", {"category": {"!=": "neighbor"}}, {}, True),
    ("< boundary", {"party_count": {"<": 2}}, {"party_count": 2}, False),
    ("<= boundary", {"party_count": {"<=": 2}}, {"party_count": 2}, True),
    ("> boundary", {"party_count": {">": 2}}, {"party_count": 2}, False),
    ("in matches", {"source": {"in": ["police_110", "grid_app"]}}, {}, True),
    ("not in", {"not": {"source": {"in": ["police_110", "patrol"]}}}, {}, True),
    ("not contains_any", {"not": {"flags": {"contains_any": ["cross_region"]}}}, {}, True),
    ("not contains_any, present", {"not": {"flags": {"contains_any": ["cross_region"]}}}, {"risk": {"cross_region": True}}, False),
    ("not all = any not", {"not": {"all": [{"party_count": {">=": 1}}, {"category": {"==": "neighbor"}}]}}, {}, True),
    ("not any = all not", {"not": {"any": [{"party_count": {">=": 5}}, {"category": {"==": "family_marriage"}}]}}, {}, False),
    ("double negation", {"not": {"not": {"party_count": {"==": 2}}}}, {}, True),
    ("absent amount never compares", {"amount_cny": {"<": 100}}, {}, False),
    ("absent amount, negated", {"not": {"amount_cny": {">=": 100}}}, {}, False),
    ("cause of a new report", {"cause": {"==": "reported"}}, {}, True),
]


@pytest.mark.parametrize("case, when, overrides, matches", CONDITIONS, ids=[c[0] for c in CONDITIONS])
def test_conditions_compile_faithfully(case, when, overrides, matches):
    assert grade_with(when, **overrides) == (2 if matches else 1)


def test_rules_files_cannot_run_code():
    # PyYAML's safe loader refuses object tags; nothing in a rule is evaluated.
    text = textwrap.dedent(
        """
        version: "1"
        default_reason: x
        levels: {1: {tier: on_site}, 2: {tier: mediation_room}, 3: {tier: joint_consultation}}
        rules: [{id: R, reason: x, when: {party_count: {">=": "__import__('os').system('true')"}}, then: {level_at_least: 2}}]
        """
    )
    with pytest.raises(RulesetError, match="expects an integer"):
        parse_ruleset(text)
