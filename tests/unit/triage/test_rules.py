"""Table-driven tests of the default rules: every rule, the max-level combination, never-downgrade, keywords."""

import json
from typing import get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.common import Category
from schemas.disputes import DisputeReported, ReassessmentReason
from services.triage.grading import (
    _CATCH_ALL_KEY,
    Features,
    Grader,
    _key,
    _member_key,
    detect_keywords,
    detect_text,
    effective_flags,
)
from services.triage.ruleset import DEFAULT_RULES, KNOWN_FLAGS, VULNERABILITIES, KeywordSpec, load_ruleset
from tests.support.samples import report_payload

RULESET = load_ruleset(DEFAULT_RULES)
GRADER = Grader(RULESET)

CHILD = {"role": "complainant", "kind": "person", "name": "小明", "age": 12, "vulnerable": ["minor"]}
GRANNY = {"role": "complainant", "kind": "person", "name": "赵奶奶", "age": 81, "vulnerable": ["elderly"]}
DISABLED = {"role": "complainant", "kind": "person", "name": "钱某", "vulnerable": ["disabled"]}


def report(**overrides) -> DisputeReported:
    return DisputeReported.model_validate_json(json.dumps(report_payload(**overrides)))


def grade(features=Features(), **overrides):
    subject = report(**overrides)
    detected, _ = detect_text(subject.description, RULESET)
    return GRADER.grade(subject, Features(detected | features.detected, features.correlated, features.cause))


# (case, report overrides, correlated flags, level, urgency, rule ids that must match)
CASES = [
    ("plain family quarrel", {}, (), 1, "routine", ["default"]),
    ("three failed mediations", {"history": {"failed_mediations": 3}}, (), 3, "urgent", ["L3-failed-mediations"]),
    ("five failed mediations", {"history": {"failed_mediations": 5}}, (), 3, "urgent", ["L3-failed-mediations"]),
    ("cross region", {"risk": {"cross_region": True}}, (), 3, "urgent", ["L3-cross-region"]),
    ("violence threat reported", {"risk": {"violence_threat": True}}, (), 3, "immediate", ["L3-violence", "U-immediate"]),
    ("weapon involved", {"risk": {"weapon_involved": True}}, (), 3, "immediate", ["L3-violence", "U-immediate"]),
    ("ten parties", {"party_count": 10}, (), 3, "urgent", ["L3-mass"]),
    ("mass gathering reported", {"risk": {"mass_gathering": True}}, (), 3, "urgent", ["L3-mass"]),
    ("petition history", {"risk": {"petition_history": True}}, (), 3, "urgent", ["L3-petition"]),
    ("group wage risk", {"category": "labor_wage"}, ("group_wage_risk",), 3, "urgent", ["L3-group-wage"]),
    ("one failed mediation", {"history": {"failed_mediations": 1}}, (), 2, "routine", ["L2-failed-mediation"]),
    ("two failed mediations", {"history": {"failed_mediations": 2}}, (), 2, "routine", ["L2-failed-mediation"]),
    ("three parties", {"party_count": 3}, (), 2, "routine", ["L2-parties"]),
    ("nine parties", {"party_count": 9}, (), 2, "routine", ["L2-parties"]),
    ("demolition", {"category": "demolition_resettlement"}, (), 2, "routine", ["L2-complex-category"]),
    ("land transfer", {"category": "land_transfer"}, (), 2, "routine", ["L2-complex-category"]),
    ("enterprise restructuring", {"category": "enterprise_restructuring"}, (), 2, "routine", ["L2-complex-category"]),
    ("repeat parties", {}, ("repeat_parties",), 2, "routine", ["L2-repeat"]),
    ("rebound", {"history": {"rebounds": 1}}, (), 2, "routine", ["L2-repeat"]),
    ("self-harm threat reported", {"risk": {"self_harm_threat": True}}, (), 2, "immediate", ["L2-self-harm", "U-immediate"]),
    ("100,000 yuan", {"amount_cny": 100000}, (), 2, "routine", ["L2-amount"]),
    ("99,999 yuan", {"amount_cny": 99999.99}, (), 1, "routine", ["default"]),
    ("two parties", {"party_count": 2}, (), 1, "routine", ["default"]),
    ("a minor", {"parties": [CHILD]}, (), 1, "urgent", ["U-vulnerable"]),
    ("an elderly party", {"parties": [GRANNY]}, (), 1, "urgent", ["U-vulnerable"]),
    ("a disabled party only", {"parties": [DISABLED]}, (), 1, "routine", ["default"]),
    # Max-level combination: level 2 and level 3 rules together give 3, both listed.
    (
        "level 2 and 3 together",
        {"party_count": 5, "amount_cny": 200000, "risk": {"cross_region": True}},
        (),
        3,
        "urgent",
        ["L3-cross-region", "L2-parties", "L2-amount"],
    ),
    (
        "self-harm with a minor",
        {"risk": {"self_harm_threat": True}, "parties": [CHILD]},
        (),
        2,
        "immediate",
        ["L2-self-harm", "U-immediate", "U-vulnerable"],
    ),
    # Reassessment: overdue goes one level up, capped at 3; never below the previous level.
    ("overdue level 1", {"history": {"sla_breaches": 1, "previous_level": 1}}, (), 2, "routine", ["ESC-overdue-from-1"]),
    ("overdue level 2", {"history": {"sla_breaches": 1, "previous_level": 2}}, (), 3, "urgent", ["ESC-overdue-from-2", "KEEP-level-2"]),
    ("overdue level 3 stays 3", {"history": {"sla_breaches": 2, "previous_level": 3}}, (), 3, "urgent", ["ESC-overdue-from-2", "KEEP-level-3"]),
    ("reassessed level 3 never drops", {"history": {"previous_level": 3}}, (), 3, "urgent", ["KEEP-level-3"]),
    ("reassessed level 2 never drops", {"history": {"previous_level": 2, "failed_mediations": 0}}, (), 2, "routine", ["KEEP-level-2"]),
    ("previous level 1 without breach", {"history": {"previous_level": 1}}, (), 1, "routine", ["default"]),
    ("third failure after two", {"history": {"failed_mediations": 3, "previous_level": 2}}, (), 3, "urgent", ["L3-failed-mediations", "KEEP-level-2"]),
]


@pytest.mark.parametrize("case, overrides, correlated, level, urgency, rules", CASES, ids=[c[0] for c in CASES])
def test_default_rules(case, overrides, correlated, level, urgency, rules):
    triage = grade(Features(correlated=frozenset(correlated)), **overrides)
    assert (triage.level, triage.urgency) == (level, urgency)
    assert triage.tier == {1: "on_site", 2: "mediation_room", 3: "joint_consultation"}[level]
    assert [r.id for r in triage.matched_rules] == rules
    assert all(r.reason for r in triage.matched_rules)


# (case, description, flags detected)
KEYWORDS = [
    ("knife", "他拿着刀在门口骂人", {"violence_threat"}),
    ("revenge", "扬言要报复对方全家", {"violence_threat"}),
    ("petrol", "带了一桶汽油到村委会", {"violence_threat"}),
    ("suicide is self-harm, not violence", "妻子说不想活了要自杀", {"self_harm_threat"}),
    ("jumping", "讨薪工人爬上塔吊要跳楼", {"self_harm_threat"}),
    ("pesticide", "老人扬言喝农药", {"self_harm_threat"}),
    ("bargaining is not violence", "买菜砍价发生口角", set()),
    ("banner", "工人在工地门口拉横幅", {"mass_gathering"}),
    ("blocking the road", "村民堵路阻挠施工", {"mass_gathering"}),
    ("collective petition", "扬言集体上访", {"mass_gathering", "petition_history"}),
    ("petition", "曾多次到县信访局反映", {"petition_history"}),
    ("nothing", "邻居装修噪音扰民", set()),
]


@pytest.mark.parametrize("case, description, flags", KEYWORDS, ids=[k[0] for k in KEYWORDS])
def test_keyword_detection(case, description, flags):
    assert detect_text(description, RULESET)[0] == flags


# The word lists of rules files written before `detection:` still work.
LEGACY = {"violence_threat": KeywordSpec(words=["刀"], not_within=["刀具"])}


@pytest.mark.parametrize("description, flags", [("拿着刀", {"violence_threat"}), ("刀具店", set())])
def test_keyword_lists_still_detect(description, flags):
    assert detect_keywords(description, LEGACY) == flags


def test_a_detected_flag_counts_like_a_reported_one_and_says_it_was_detected():
    detected = grade(description="对方扬言要弄死他")
    reported = grade(risk={"violence_threat": True})
    assert (detected.level, detected.urgency) == (reported.level, reported.urgency) == (3, "immediate")
    assert "detected:violence_threat" in detected.flags and "violence_threat" in detected.flags
    assert "detected:violence_threat" not in reported.flags


def test_grading_the_same_report_twice_gives_the_same_result():
    assert grade(party_count=12) == grade(party_count=12)


def test_engine_state_does_not_grow_past_the_session_limit():
    # durable-rules allows 1,024 live sessions per ruleset; every grade deletes its own.
    unmemoised = Grader(RULESET, memo_size=0)
    for i in range(3000):
        assert unmemoised.grade(report(party_count=1 + i % 12), Features()).level in (1, 2, 3)


ENGINE = Grader(RULESET, memo_size=0)
GRADER_SMALL_MEMO = Grader(RULESET, memo_size=64)  # small, so eviction runs too
HISTORY = st.fixed_dictionaries(
    {"mediation_attempts": st.integers(0, 5), "failed_mediations": st.integers(0, 5), "sla_breaches": st.integers(0, 3),
     "rebounds": st.integers(0, 3), "previous_level": st.none() | st.sampled_from([1, 2, 3])}
)
# Amounts in fen, near the rules' own threshold as well as anywhere, so every band is crossed.
AMOUNTS = st.none() | st.integers(0, 10**8).map(lambda fen: fen / 100) | st.sampled_from([99_999.99, 100_000, 100_000.01])


HISTORY_FIELDS = ("mediation_attempts", "failed_mediations", "sla_breaches", "rebounds", "previous_level")


def build_fact(subject: DisputeReported, features: Features, flags: set[str]) -> dict:
    """Flatten a report into the whole fact, every key and every number as it is: what the engine alone would grade."""
    fact = {_key("category"): subject.category, _key("source"): subject.source, _key("cause"): features.cause, _key("party_count"): subject.party_count}
    if subject.amount_cny is not None:
        fact[_key("amount_cny")] = subject.amount_cny
    for name in HISTORY_FIELDS:
        if (value := getattr(subject.history, name)) is not None:
            fact[_key(f"history.{name}")] = value
    vulnerable = {v for party in subject.parties for v in party.vulnerable}
    fact |= {_member_key("flags", f): f in flags for f in KNOWN_FLAGS} | {_member_key("vulnerable", v): v in vulnerable for v in VULNERABILITIES}
    return fact | {_CATCH_ALL_KEY: 1}


def engine_grade(subject, features):
    """Grade on the raw fact, as the engine alone would."""
    flags = effective_flags(subject, features)
    return ENGINE._decide(ENGINE._match(build_fact(subject, features, flags)), flags, features)


@settings(max_examples=400, deadline=None)
@given(
    party_count=st.integers(1, 30), amount=AMOUNTS, history=HISTORY,
    category=st.sampled_from(get_args(Category)),
    risk=st.dictionaries(st.sampled_from(["violence_threat", "weapon_involved", "self_harm_threat", "mass_gathering"]), st.booleans()),
    correlated=st.frozensets(st.sampled_from(["repeat_parties", "group_wage_risk"])),
    detected=st.frozensets(st.sampled_from(["violence_threat", "self_harm_threat", "petition_history", "mass_gathering"])),
    cause=st.sampled_from(["reported", *get_args(ReassessmentReason)]),
    parties=st.sampled_from([[], [CHILD], [GRANNY, DISABLED], [CHILD, GRANNY]]),
)
def test_memoised_grades_of_the_rules_keys_equal_the_engine_s_on_the_whole_raw_fact(
    party_count, amount, history, category, risk, correlated, detected, cause, parties
):
    extra = {"parties": parties} if parties else {}
    subject = report(party_count=party_count, amount_cny=amount, history=history, category=category, risk=risk, **extra)
    features = Features(detected, correlated, cause)
    assert GRADER_SMALL_MEMO.grade(subject, features) == engine_grade(subject, features)


@pytest.mark.parametrize("amount", [5e-324, 1e-7, 123456.789012345678, 1e13])
def test_numbers_the_engine_cannot_parse_are_graded_by_their_band(amount):
    # durable-rules refuses some valid JSON numbers (5e-324); grading must not fail the batch on them.
    assert grade(amount_cny=amount).level == (2 if amount >= 100_000 else 1)
