"""Correlation windows, table-driven on report times: repeat parties (90 days, other matters), group wage risk (7 days,
3 disputes) and the same matter (30 days)."""

import hashlib
import hmac
import json
from datetime import timedelta

import pytest

from schemas.disputes import DisputeReported
from services.runtime.store import create_engine
from services.triage.correlation import (
    Hasher,
    correlate,
    employer_name,
    legacy_matter_key,
    normalise_name,
    matter_probes,
    probes,
    same_matter,
    subject_of,
)
from services.triage.grading import Features, Grader
from services.triage.ruleset import DEFAULT_RULES, SameMatterSpec, load_ruleset
from services.triage.store import TriageStore
from tests.support.samples import at, report_payload

RULESET = load_ruleset(DEFAULT_RULES)
SPEC = RULESET.spec.correlation
HASHER = Hasher(b"test-key-0123456789abcdef")
START = at("2026-03-01T09:00:00+08:00")


def person(phone=None, id_number=None, name="王某"):
    return {"role": "complainant", "kind": "person", "name": name, "phone": phone, "id_number": id_number}


def employer(name):
    return {"role": "respondent", "kind": "organization", "name": name}


def reported(n, dispute, day, parties, category="family_marriage", community="枫源村"):
    payload = report_payload(
        event_id=f"e{n}",
        dispute_id=dispute,
        reported_at=(START + timedelta(days=day)).isoformat(),
        parties=parties,
        category=category,
        region={"county": "诸暨市", "town": "枫桥镇", "community": community},
    )
    return DisputeReported.model_validate_json(json.dumps(payload))


def flags_of(reports):
    subjects = [subject_of(r.event_id, r, HASHER, SPEC) for r in reports]
    return [set(v) for v in correlate(subjects, {}, SPEC).values()]


async def flags_from_store(reports, tmp_path):
    """Record every report but the last in a real store, then correlate the last in a batch of its own."""
    store = TriageStore(create_engine(f"sqlite+aiosqlite:///{tmp_path}/triage.db"))
    await store.create()
    try:
        subjects = [subject_of(r.event_id, r, HASHER, SPEC) for r in reports]
        await store.record([], [s for subject in subjects[:-1] for s in subject.sightings()])
        last = subjects[-1:]
        return set(correlate(last, await asked_as_the_service_does(store, last), SPEC)[last[0].event_id])
    finally:
        await store.engine.dispose()


async def asked_as_the_service_does(store, subjects):
    """Ask the party and employer probes first, then the same matter only where a party was seen before."""
    stored = await store.other_disputes(probes(subjects, SPEC))
    return stored | await store.same_matters(matter_probes(subjects, stored, SPEC))


WORKER = person(phone="13800000001")
# (case, [(dispute, day, parties, category)], flags of the last report)
CASES = [
    ("same phone, other dispute, 30 days", [("A", 0, [WORKER], "contract_debt"), ("B", 30, [WORKER], "neighbor")], {"repeat_parties"}),
    ("same phone, the same matter within 30 days: no repeat", [("A", 0, [WORKER], "neighbor"), ("B", 30, [WORKER], "neighbor")], set()),
    ("same phone, 90 days", [("A", 0, [WORKER], "neighbor"), ("B", 90, [WORKER], "neighbor")], {"repeat_parties"}),
    ("same phone, 91 days", [("A", 0, [WORKER], "neighbor"), ("B", 91, [WORKER], "neighbor")], set()),
    ("same phone, same dispute", [("A", 0, [WORKER], "neighbor"), ("A", 3, [WORKER], "neighbor")], set()),
    ("phone written differently", [("A", 0, [person(phone="+86 138-0000-0001")], "contract_debt"), ("B", 5, [WORKER], "neighbor")], {"repeat_parties"}),
    ("same ID number, lower-case x", [("A", 0, [person(id_number="33068119900101001x")], "contract_debt"), ("B", 5, [person(id_number="33068119900101001X")], "neighbor")], {"repeat_parties"}),
    ("a later report does not flag an earlier one", [("B", 30, [WORKER], "contract_debt"), ("A", 0, [WORKER], "neighbor")], set()),
    ("different people", [("A", 0, [person(phone="13800000002")], "neighbor"), ("B", 1, [WORKER], "neighbor")], set()),
    (
        "three wage disputes against one employer in 7 days",
        [("W1", 0, [WORKER, employer("宏达建筑公司")], "labor_wage"), ("W2", 3, [person(phone="13900000009"), employer("宏达建筑公司")], "labor_wage"), ("W3", 7, [person(phone="13700000007"), employer("宏达建筑公司")], "labor_wage")],
        {"group_wage_risk"},
    ),
    (
        "third wage dispute after 8 days",
        [("W1", 0, [person(phone="1"+"3"*10), employer("宏达建筑公司")], "labor_wage"), ("W2", 3, [person(phone="1"+"4"*10), employer("宏达建筑公司")], "labor_wage"), ("W3", 8, [person(phone="1"+"5"*10), employer("宏达建筑公司")], "labor_wage")],
        set(),
    ),
    (
        "two wage disputes only",
        [("W1", 0, [person(phone="1"+"3"*10), employer("宏达建筑公司")], "labor_wage"), ("W2", 1, [person(phone="1"+"4"*10), employer("宏达建筑公司")], "labor_wage")],
        set(),
    ),
    (
        "full-width and spaced names are one employer",
        [("W1", 0, [person(phone="1"+"3"*10), employer("ＡＢＣ 建筑公司")], "labor_wage"), ("W2", 1, [person(phone="1"+"4"*10), employer(" ABC建筑公司 ")], "labor_wage"), ("W3", 2, [person(phone="1"+"5"*10), employer("ABC　建筑 公司")], "labor_wage")],
        {"group_wage_risk"},
    ),
    (
        "the same dispute reported three times counts once",
        [("W1", 0, [person(phone="1"+"3"*10), employer("宏达建筑公司")], "labor_wage"), ("W1", 1, [person(phone="1"+"3"*10), employer("宏达建筑公司")], "labor_wage"), ("W1", 2, [person(phone="1"+"3"*10), employer("宏达建筑公司")], "labor_wage")],
        set(),
    ),
    (
        "contract disputes do not count as wage disputes",
        [("C1", 0, [person(phone="1"+"3"*10), employer("宏达建筑公司")], "contract_debt"), ("C2", 1, [person(phone="1"+"4"*10), employer("宏达建筑公司")], "contract_debt"), ("W3", 2, [person(phone="1"+"5"*10), employer("宏达建筑公司")], "labor_wage")],
        set(),
    ),
]


@pytest.mark.parametrize("case, steps, expected", CASES, ids=[c[0] for c in CASES])
def test_correlation_windows(case, steps, expected):
    reports = [reported(n, d, day, parties, category) for n, (d, day, parties, category) in enumerate(steps)]
    assert flags_of(reports)[-1] == expected


@pytest.mark.parametrize("case, steps, expected", CASES, ids=[c[0] for c in CASES])
async def test_correlation_windows_across_batches(case, steps, expected, tmp_path):
    reports = [reported(n, d, day, parties, category) for n, (d, day, parties, category) in enumerate(steps)]
    assert await flags_from_store(reports, tmp_path) == expected


# (case, [(dispute, day, parties, category, community)], the last report's same-matter disputes, its correlation flags)
# The same matter is one quarrel reported again, not its parties quarrelling again: it is no repeat_parties (which
# would grade it L2-repeat and make dispatch regrade a level-1 case it joins); a partial match keeps the flag.
MATTERS = [
    ("the same quarrel through 110 an hour later", [("A", 0, [WORKER], "neighbor", "枫源村"), ("B", 0.04, [WORKER], "neighbor", "枫源村")], ("A",), set()),
    ("by ID number, 30 days later", [("A", 0, [person(id_number="33068119900101001X")], "neighbor", "枫源村"), ("B", 30, [person(id_number="33068119900101001x")], "neighbor", "枫源村")], ("A",), set()),
    ("31 days later: a repeat, not the same report", [("A", 0, [WORKER], "neighbor", "枫源村"), ("B", 31, [WORKER], "neighbor", "枫源村")], (), {"repeat_parties"}),
    ("same person, another matter", [("A", 0, [WORKER], "neighbor", "枫源村"), ("B", 1, [WORKER], "labor_wage", "枫源村")], (), {"repeat_parties"}),
    ("same person, another community", [("A", 0, [WORKER], "neighbor", "枫源村"), ("B", 1, [WORKER], "neighbor", "栎桥村")], (), {"repeat_parties"}),
    ("same matter and place, other people", [("A", 0, [person(phone="13800000002")], "neighbor", "枫源村"), ("B", 1, [WORKER], "neighbor", "枫源村")], (), set()),
    ("a masked phone matches nobody", [("A", 0, [person(phone="138****0001")], "neighbor", "枫源村"), ("B", 1, [person(phone="138****0001")], "neighbor", "枫源村")], (), set()),
    ("the same dispute again is no other dispute", [("A", 0, [WORKER], "neighbor", "枫源村"), ("A", 1, [WORKER], "neighbor", "枫源村")], (), set()),
    ("the same dispute again after another matter: a repeat of that one only", [("X", 0, [WORKER], "labor_wage", "枫源村"), ("A", 1, [WORKER], "neighbor", "枫源村"), ("A", 2, [WORKER], "neighbor", "枫源村")], (), {"repeat_parties"}),
    ("three channels: both earlier ids, sorted", [("C", 0, [WORKER], "neighbor", "枫源村"), ("A", 0.1, [WORKER], "neighbor", "枫源村"), ("B", 0.2, [WORKER], "neighbor", "枫源村")], ("A", "C"), set()),
    ("the same matter, and another matter of the same person: a repeat", [("X", 0, [WORKER], "labor_wage", "枫源村"), ("A", 1, [WORKER], "neighbor", "枫源村"), ("B", 1.1, [WORKER], "neighbor", "枫源村")], ("A",), {"repeat_parties"}),
    ("the same matter by one party, another matter by the other", [("X", 0, [person(phone="13900000009")], "labor_wage", "枫源村"), ("A", 1, [WORKER], "neighbor", "枫源村"), ("B", 1.1, [WORKER, person(phone="13900000009")], "neighbor", "枫源村")], ("A",), {"repeat_parties"}),
    ("five reports of one matter: named up to max_candidates, none a repeat", [(f"M{n}", n / 10, [WORKER], "neighbor", "枫源村") for n in range(5)] + [("B", 1, [WORKER], "neighbor", "枫源村")], ("M0", "M1", "M2", "M3"), set()),
]


def _matter_reports(steps):
    return [reported(n, d, day, parties, category, community) for n, (d, day, parties, category, community) in enumerate(steps)]


@pytest.mark.parametrize("case, steps, matter, flags", MATTERS, ids=[c[0] for c in MATTERS])
def test_the_same_matter_is_a_shared_party_category_and_community_within_the_window(case, steps, matter, flags):
    subjects = [subject_of(r.event_id, r, HASHER, SPEC) for r in _matter_reports(steps)]
    assert same_matter(subjects, {}, SPEC)[subjects[-1].event_id] == matter
    assert set(correlate(subjects, {}, SPEC)[subjects[-1].event_id]) == flags


@pytest.mark.parametrize("case, steps, matter, flags", MATTERS, ids=[c[0] for c in MATTERS])
async def test_the_same_matter_and_its_flags_are_found_in_the_store_across_batches(case, steps, matter, flags, tmp_path):
    store = TriageStore(create_engine(f"sqlite+aiosqlite:///{tmp_path}/triage.db"))
    await store.create()
    try:
        subjects = [subject_of(r.event_id, r, HASHER, SPEC) for r in _matter_reports(steps)]
        await store.record([], [s for subject in subjects[:-1] for s in subject.sightings()])
        last = subjects[-1:]
        stored = await asked_as_the_service_does(store, last)
        assert same_matter(last, stored, SPEC)[last[0].event_id] == matter
        assert set(correlate(last, stored, SPEC)[last[0].event_id]) == flags
    finally:
        await store.engine.dispose()


BY_ID = person(id_number="33068119900101001X")
# (case, the rules' same-matter criteria, [(dispute, day, parties, category, community)], the last report's same matter)
CRITERIA = [
    ("as shipped: a shared phone, category and community", {}, [("A", 0, [WORKER], "neighbor", "枫源村"), ("B", 1, [WORKER], "neighbor", "枫源村")], ("A",)),
    ("by phone only: a shared ID number is not enough", {"identifiers": ["phone"]}, [("A", 0, [BY_ID], "neighbor", "枫源村"), ("B", 1, [BY_ID], "neighbor", "枫源村")], ()),
    ("by ID number only: a shared phone is not enough", {"identifiers": ["id_number"]}, [("A", 0, [WORKER], "neighbor", "枫源村"), ("B", 1, [WORKER], "neighbor", "枫源村")], ()),
    ("by ID number only: a shared ID number", {"identifiers": ["id_number"]}, [("A", 0, [BY_ID], "neighbor", "枫源村"), ("B", 1, [BY_ID], "neighbor", "枫源村")], ("A",)),
    ("the same place, any category", {"same": ["community"]}, [("A", 0, [WORKER], "neighbor", "枫源村"), ("B", 1, [WORKER], "contract_debt", "枫源村")], ("A",)),
    ("the same category, any place", {"same": ["category"]}, [("A", 0, [WORKER], "neighbor", "枫源村"), ("B", 1, [WORKER], "neighbor", "栎桥村")], ("A",)),
    ("the same category, any place: another category", {"same": ["category"]}, [("A", 0, [WORKER], "neighbor", "枫源村"), ("B", 1, [WORKER], "contract_debt", "栎桥村")], ()),
]


@pytest.mark.parametrize("case, criteria, steps, matter", CRITERIA, ids=[c[0] for c in CRITERIA])
def test_the_same_matters_criteria_come_from_the_rules(case, criteria, steps, matter):
    spec = SPEC.model_copy(update={"same_matter": SameMatterSpec(**criteria)})
    subjects = [subject_of(r.event_id, r, HASHER, spec) for r in _matter_reports(steps)]
    assert same_matter(subjects, {}, spec)[subjects[-1].event_id] == matter
    # Whatever the criteria, the same matter is no repeat and a partial match is one.
    assert set(correlate(subjects, {}, spec)[subjects[-1].event_id]) == (set() if matter else {"repeat_parties"})


def test_the_shipped_criteria_hash_the_matter_keys_the_store_already_holds():
    # As stored before a party's sighting carried its matter: an upgrade keeps matching the sightings of the last 30 days.
    [report] = _matter_reports([("A", 0, [WORKER], "neighbor", "枫源村")])
    party = HASHER("phone", "13800000001")
    before = hashlib.blake2b(party.encode() + "|neighbor|诸暨市/枫桥镇/枫源村".encode(), digest_size=32).hexdigest()
    assert {legacy_matter_key(m) for m in subject_of(report.event_id, report, HASHER, SPEC).matters} == {before}


def test_a_level_1_quarrel_reported_again_under_another_id_grades_level_1():
    # Graded L2-repeat, the duplicate would make dispatch open a new attempt at level 2 for the case it joins.
    steps = [("A", 0, [WORKER], "family_marriage", "枫源村"), ("H-12345-1", 0.01, [WORKER], "family_marriage", "枫源村"),
             ("W", 0.02, [WORKER], "labor_wage", "枫源村")]
    reports = _matter_reports(steps)
    correlated = correlate([subject_of(r.event_id, r, HASHER, SPEC) for r in reports], {}, SPEC)
    graded = [Grader(RULESET).grade(r, Features.of_text(r.description, RULESET, correlated[r.event_id])) for r in reports]
    assert [(t.level, "L2-repeat" in [m.id for m in t.matched_rules]) for t in graded] == [(1, False), (1, False), (2, True)]


async def test_a_much_named_employer_is_asked_for_a_bounded_number_of_disputes(tmp_path):
    site = employer("宏达建筑公司")
    earlier = [reported(n, f"W{n}", 0, [person(phone=f"139{n:08d}"), site], "labor_wage") for n in range(50)]
    store = TriageStore(create_engine(f"sqlite+aiosqlite:///{tmp_path}/triage.db"))
    await store.create()
    try:
        await store.record([], [s for r in earlier for s in subject_of(r.event_id, r, HASHER, SPEC).sightings()])
        last = [subject_of("e-last", reported(99, "W99", 1, [person(phone="13700000000"), site], "labor_wage"), HASHER, SPEC)]
        answers = await store.other_disputes(probes(last, SPEC))
    finally:
        await store.engine.dispose()
    [(key, disputes)] = [(k, v) for k, v in answers.items() if k[1] == "employer"]
    assert len(disputes) == SPEC.group_wage_risk.min_disputes  # the probe's limit, not 50
    assert correlate(last, answers, SPEC)["e-last"] == {"group_wage_risk"}


def test_names_fold_width_and_whitespace():
    assert normalise_name("ＡＢＣ　建筑 公司 ") == normalise_name("abc建筑公司")


# (written, compared as): legal forms, group words, brackets and spaces do not make another employer.
EMPLOYER_NAMES = [
    ("宏达建筑公司", "宏达建筑"),
    ("宏达建筑有限公司", "宏达建筑"),
    ("宏达建筑有限责任公司", "宏达建筑"),
    ("宏达建筑股份有限公司", "宏达建筑"),
    ("宏达建筑集团有限公司", "宏达建筑"),
    ("宏达建筑（集团）有限公司", "宏达建筑"),
    ("宏达建筑(集团)有限公司", "宏达建筑"),
    (" 宏达 建筑 有限公司 ", "宏达建筑"),
    ("ＨＤ建筑有限公司", "hd建筑"),
    ("宏达建筑", "宏达建筑"),
    ("公司", "公司"),  # a bare legal form stays, rather than matching every other bare one as ""
    ("宏达物业有限公司", "宏达物业"),  # another line of business is another employer
]


@pytest.mark.parametrize("written, compared", EMPLOYER_NAMES, ids=[n[0] for n in EMPLOYER_NAMES])
def test_employer_names_are_compared_without_legal_forms(written, compared):
    assert employer_name(written) == compared


def test_one_employer_under_three_spellings_is_group_wage_risk():
    spellings = ["宏达建筑公司", "宏达建筑有限公司", "宏达建筑（集团）有限公司"]
    reports = [reported(n, f"W{n}", n, [person(phone=f"139{n:08d}"), employer(name)], "labor_wage") for n, name in enumerate(spellings)]
    assert flags_of(reports) == [set(), set(), {"group_wage_risk"}]


def test_hashes_are_keyed():
    other = Hasher(b"another-key-0123456789")
    assert HASHER("phone", "13800000001") != other("phone", "13800000001")
    assert "13800000001" not in HASHER("phone", "13800000001")


@pytest.mark.parametrize(
    ("key", "kind", "value"),
    [
        (b"test-key-0123456789abcdef", "phone", "13800000001"),
        (b"k" * 16, "id", "33068119800101001X"),
        (b"k" * 64, "org", "宏达建筑"),  # a key of exactly one block
        (bytes(range(65)), "phone", ""),  # longer than a block: hashed first
        (b"\x00" * 100, "org", "枫桥镇 · 某某公司"),
    ],
)
def test_hashes_are_hmac_sha256_of_kind_and_value(key, kind, value):
    assert Hasher(key)(kind, value) == hmac.new(key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()


def test_short_keys_are_refused():
    with pytest.raises(ValueError, match="at least 16 bytes"):
        Hasher(b"short")


def test_the_same_matter_is_asked_only_where_a_party_was_seen_before():
    first, again = (subject_of(r.event_id, r, HASHER, SPEC) for r in _matter_reports([("A", 0, [WORKER], "neighbor", "枫源村"), ("B", 1, [WORKER], "neighbor", "枫源村")]))
    assert matter_probes([again], {}, SPEC) == []  # nobody seen: no second question
    [party] = [k for k in again.parties]
    seen = {(again.event_id, "party", party): frozenset({"A"})}
    assert [(p.party, p.category, p.place) for p in matter_probes([again], seen, SPEC)] == [(party, "neighbor", "诸暨市/枫桥镇/枫源村")]
    assert {p.event_id for p in matter_probes([first, again], {}, SPEC)} == {first.event_id, again.event_id}  # both in one batch
