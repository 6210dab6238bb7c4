"""Correlation enrichment: who has been seen before, which employer keeps being named. Pure: the store feeds it."""

import hashlib
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import NamedTuple

from schemas.disputes import DisputeReported
from services.triage.ruleset import CorrelationSpec

PARTY = "party"
EMPLOYER = "employer"
MATTER = "matter"


class Hasher:
    """Keyed HMAC-SHA256 of identifiers: the store never holds an ID number or phone in clear."""

    def __init__(self, key: bytes):
        if len(key) < 16:
            raise ValueError("the correlation HMAC key must be at least 16 bytes")
        # HMAC (RFC 2104) from the key's two padded SHA-256 states, each hashed once: an identifier continues copies of
        # them (3.0 -> 1.9 us an identifier against copying an `hmac` object, which copies both states through Python
        # code). A test holds it equal to `hmac`.
        size = hashlib.sha256().block_size
        block = (key if len(key) <= size else hashlib.sha256(key).digest()).ljust(size, b"\0")
        self._inner = hashlib.sha256(bytes(byte ^ 0x36 for byte in block))
        self._outer = hashlib.sha256(bytes(byte ^ 0x5C for byte in block))

    def __call__(self, kind: str, value: str) -> str:
        """Hash one normalised identifier of a kind (id, phone, org)."""
        inner, outer = self._inner.copy(), self._outer.copy()
        inner.update(f"{kind}:{value}".encode())
        outer.update(inner.digest())
        return outer.hexdigest()


# Reports name the same few places and employers over and over: each is folded once (about 1 us a name).
@lru_cache(maxsize=4096)
def normalise_name(name: str) -> str:
    """Compare names (organisations, places) after full-/half-width folding and whitespace removal."""
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", name)).casefold()


# Legal forms and group words said or left out at will: 宏达建筑公司 and 宏达建筑有限公司 are one employer.
# Longest first; stripped from the end repeatedly, so 宏达建筑集团有限公司 is 宏达建筑 too.
LEGAL_SUFFIXES = ("股份有限公司", "有限责任公司", "有限公司", "分公司", "公司", "集团")
# Brackets after NFKC folding (（） becomes ()), and the other brackets and marks names are written with.
_NOISE = re.compile(r"[()\[\]【】〔〕<>《》「」『』·・.,，、\-_]+")


def employer_name(name: str) -> str:
    """Compare employers after normalise_name, without brackets, marks and legal-form suffixes.

    Changing this changes every employer key the store holds (they are HMACs of it): see
    docs/risk-language.md, "Employer names", for what that means across an upgrade. Place names
    (matter keys) keep normalise_name, so their keys do not change.
    """
    folded = _NOISE.sub("", normalise_name(name))
    stripped = folded
    while True:
        suffix = next((s for s in LEGAL_SUFFIXES if stripped.endswith(s) and len(stripped) > len(s)), None)
        if suffix is None:
            break
        stripped = stripped[: -len(suffix)]
    # A name that is only a legal form (公司) would otherwise become empty and match nothing.
    return stripped or folded


def _normalise_phone(phone: str) -> str:
    # Most phones are written as plain ASCII digits: nothing to remove, and no pattern to run.
    digits = phone if phone.isascii() and phone.isdigit() else re.sub(r"[^0-9]", "", phone)
    return digits[2:] if digits.startswith("86") and len(digits) == 13 else digits


def identifier_keys(report: DisputeReported, hasher: Hasher) -> dict[str, set[str]]:
    """Hash every ID number and phone of the report's parties, by identifier; masked ones say too little to tell anybody apart."""
    keys: dict[str, set[str]] = {"id_number": set(), "phone": set()}
    for party in report.parties:
        # A masked value (139****0001) is shared by many people: it would tie strangers' disputes together.
        if party.id_number and "*" not in party.id_number:
            keys["id_number"].add(hasher("id", party.id_number.upper()))
        if party.phone and "*" not in party.phone:
            keys["phone"].add(hasher("phone", _normalise_phone(party.phone)))
    return keys


def employer_keys(report: DisputeReported, hasher: Hasher, spec: CorrelationSpec) -> set[str]:
    """Hash the respondent organisations of a wage dispute (none for other categories)."""
    if report.category != spec.group_wage_risk.category:
        return set()
    return {
        hasher("org", employer_name(p.name))
        for p in report.parties
        if p.role == "respondent" and p.kind == "organization" and employer_name(p.name)
    }


def place_of(report: DisputeReported) -> str:
    """Name the report's community as same-matter compares it: county, town and community, each folded."""
    region = report.region
    return f"{normalise_name(region.county)}/{normalise_name(region.town)}/{normalise_name(region.community)}"


def matter_suffix(category: str, place: str, spec: CorrelationSpec) -> str:
    """Return what the rules' same-matter fields add to a party key to name a matter: `|category|place`, a field left empty where not compared."""
    same = spec.same_matter.same
    return f"|{category if 'category' in same else ''}|{place if 'community' in same else ''}"


def matter_keys(identifiers: dict[str, set[str]], category: str, place: str, spec: CorrelationSpec) -> frozenset[str]:
    """Name each matter of a report: each party key of the identifiers the rules name, with the fields they name."""
    suffix = matter_suffix(category, place, spec)
    return frozenset(key + suffix for name in spec.same_matter.identifiers for key in identifiers[name])


def legacy_matter_key(matter: str) -> str:
    """Return the key a matter was stored under before party sightings carried their category and place."""
    # What `matter_keys` hashed then, so a store upgraded within the same-matter window still finds its matters.
    return hashlib.blake2b(matter.encode(), digest_size=32).hexdigest()


# Sightings and probes are named tuples rather than frozen dataclasses: a report makes a dozen of them, and a tuple
# is made in a third of the time.
class Sighting(NamedTuple):
    """A hashed identifier seen in a dispute at a time; a party's with the dispute's category and place (its matter)."""

    kind: str
    key: str
    dispute_id: str
    reported_at: datetime
    category: str | None = None
    place: str | None = None


@dataclass(frozen=True)
class Subject:
    """One report to correlate, with its hashed keys."""

    event_id: str
    dispute_id: str
    reported_at: datetime
    parties: frozenset[str]
    employers: frozenset[str]
    # A matter is a party key and the `matter_suffix` of the rules' fields: the same string names the same matter.
    matters: frozenset[str] = frozenset()
    category: str = ""
    place: str = ""

    def sightings(self) -> list[Sighting]:
        """Return what this report adds to the store: its parties, each with its category and place, and its employers."""
        # The matter rides on the party's row rather than a row of its own: half the rows to write, and writing them,
        # each on a random page of the key's B-tree, was the largest cost of a report.
        return [Sighting(PARTY, k, self.dispute_id, self.reported_at, self.category, self.place) for k in self.parties] + [
            Sighting(EMPLOYER, k, self.dispute_id, self.reported_at) for k in self.employers
        ]


def subject_of(event_id: str, report: DisputeReported, hasher: Hasher, spec: CorrelationSpec) -> Subject:
    """Prepare a report for correlation."""
    identifiers = identifier_keys(report, hasher)
    place = place_of(report)
    return Subject(
        event_id,
        report.dispute_id,
        report.reported_at,
        frozenset().union(*identifiers.values()),
        frozenset(employer_keys(report, hasher, spec)),
        matter_keys(identifiers, report.category, place, spec),
        report.category,
        place,
    )


def asked_per_party(spec: CorrelationSpec) -> int:
    """Return how many disputes a party or matter probe asks for: one more than the same matter names."""
    # The disputes of the same matter are no repeat (see correlate), so a party's probe must reach past them to find
    # one of another matter; the matter's probe asks as many, so a person's disputes of one matter are all seen as
    # such up to this bound. Beyond it (more than max_candidates + 1 disputes of one person in the window) the store
    # answers the ones it finds first, and a repeat may be missed or a same matter taken for one.
    return spec.same_matter.max_candidates + 1


class Probe(NamedTuple):
    """A question for the store: which other disputes named this key in a window (at most `limit` of them)."""

    event_id: str
    kind: str
    key: str
    since: datetime
    until: datetime
    dispute_id: str
    limit: int


class MatterProbe(NamedTuple):
    """Which other disputes named this party with this category and place (None: not compared) in a window, at most `limit`."""

    event_id: str
    matter: str
    party: str
    category: str | None
    place: str | None
    since: datetime
    until: datetime
    dispute_id: str
    limit: int


Answers = dict[tuple[str, str, str], frozenset[str]]


def probes(subjects: list[Subject], spec: CorrelationSpec) -> list[Probe]:
    """Ask, per subject and key, only as many earlier disputes as a flag needs: one more than the same matter can
    name for a repeat party, enough for group wage risk even if some of them are also in this batch. Bounded, so a
    much-named person or employer costs the same as any other."""
    party_window = timedelta(days=spec.repeat_parties.window_days)
    wage_window = timedelta(days=spec.group_wage_risk.window_days)
    party_limit = asked_per_party(spec)
    in_batch = Counter(key for s in subjects for key in s.employers)
    found = []
    for s in subjects:
        found += [Probe(s.event_id, PARTY, k, s.reported_at - party_window, s.reported_at, s.dispute_id, party_limit) for k in sorted(s.parties)]
        found += [
            Probe(s.event_id, EMPLOYER, k, s.reported_at - wage_window, s.reported_at, s.dispute_id, spec.group_wage_risk.min_disputes - 1 + in_batch[k])
            for k in sorted(s.employers)
        ]
    return found


# Per kind, key -> (dispute, time) of the batch's earlier subjects.
Seen = defaultdict[str, list[tuple[str, datetime]]]


def correlate(subjects: list[Subject], stored: Answers, spec: CorrelationSpec) -> dict[str, frozenset[str]]:
    """Flag each subject from the store's answers to its probes and from the subjects before it in the same batch.

    `stored` maps (event id, kind, key) to other disputes the store holds in the window, the same matter's included
    (matter_probes). Windows run on the reports' own times, so a replay of last year's reports correlates as it did then.
    """
    # One entry a subject and kind, kept apart per kind: no sighting made per key, nor a (kind, key) to look it up by.
    parties: Seen = defaultdict(list)
    employers: Seen = defaultdict(list)
    matters: Seen = defaultdict(list)
    party_window = timedelta(days=spec.repeat_parties.window_days)
    wage_window = timedelta(days=spec.group_wage_risk.window_days)
    matter_window = timedelta(days=spec.same_matter.window_days)
    flags: dict[str, frozenset[str]] = {}
    for subject in subjects:
        found = set()
        earlier = _others(subject, PARTY, subject.parties, party_window, parties, stored)
        # The same quarrel reported again through another channel is one case (dispatch joins it), not its parties
        # quarrelling again: counted as a repeat it would grade L2-repeat and regrade a level-1 case it joins.
        if earlier and earlier - _others(subject, MATTER, subject.matters, matter_window, matters, stored):
            found.add("repeat_parties")
        for key in subject.employers:
            if len(_others(subject, EMPLOYER, (key,), wage_window, employers, stored)) + 1 >= spec.group_wage_risk.min_disputes:
                found.add("group_wage_risk")
        flags[subject.event_id] = frozenset(found)
        _remember(parties, subject, subject.parties)
        _remember(employers, subject, subject.employers)
        _remember(matters, subject, subject.matters)
    return flags


def _remember(seen: Seen, subject: Subject, keys: frozenset[str]) -> None:
    # Later subjects of the batch look only at the kinds their flags read: the others are not kept.
    entry = (subject.dispute_id, subject.reported_at)
    for key in keys:
        seen[key].append(entry)


def _others(subject: Subject, kind: str, keys: Iterable[str], window: timedelta, seen: Seen, stored: Answers) -> set[str]:
    """Return the other disputes that named any of these keys of a kind in the window: earlier in the batch or in the store."""
    found: set[str] = set()
    event_id, until = subject.event_id, subject.reported_at
    for key in keys:
        in_batch, in_store = seen.get(key), stored.get((event_id, kind, key))
        # Most keys are new people: no window to walk (measured: a fifth of triage's correlation time).
        if in_store:
            found |= in_store
        if in_batch:
            earliest = until - window
            found.update(dispute for dispute, at in in_batch if earliest <= at <= until)
    found.discard(subject.dispute_id)
    return found


def matter_probes(subjects: list[Subject], stored: Answers, spec: CorrelationSpec) -> list[MatterProbe]:
    """Ask for the disputes of the same matter only where a party was seen before: most reports name new people.

    A same matter shares a party, so when its window is within the party window the party probes' answers (and
    the batch) tell which subjects could have one; the others cost no second question.
    """
    if spec.same_matter.window_days > spec.repeat_parties.window_days:
        maybe = subjects
    else:
        disputes_naming: defaultdict[str, set[str]] = defaultdict(set)
        for subject in subjects:
            for key in subject.parties:
                disputes_naming[key].add(subject.dispute_id)
        maybe = [s for s in subjects if any(stored.get((s.event_id, PARTY, k)) or len(disputes_naming[k]) > 1 for k in s.parties)]
    window, limit, same = timedelta(days=spec.same_matter.window_days), asked_per_party(spec), spec.same_matter.same
    found = []
    for s in maybe:
        suffix = matter_suffix(s.category, s.place, spec)
        category, place = (s.category if "category" in same else None), (s.place if "community" in same else None)
        found += [
            MatterProbe(s.event_id, m, m[: -len(suffix)], category, place, s.reported_at - window, s.reported_at, s.dispute_id, limit)
            for m in sorted(s.matters)
        ]
    return found


def same_matter(subjects: list[Subject], stored: Answers, spec: CorrelationSpec) -> dict[str, tuple[str, ...]]:
    """Name, per subject, the other disputes of the same matter in the window: from the store and earlier in the batch.

    Sorted and bounded, so a redelivered batch names the same ones; which of them is a case is dispatch's to say.
    """
    seen: Seen = defaultdict(list)
    window = timedelta(days=spec.same_matter.window_days)
    found: dict[str, tuple[str, ...]] = {}
    for subject in subjects:
        others = _others(subject, MATTER, subject.matters, window, seen, stored)
        found[subject.event_id] = tuple(sorted(others)[: spec.same_matter.max_candidates])
        _remember(seen, subject, subject.matters)
    return found
