"""Correlation keys of the parties: masked identifiers, shared by many people, tie no disputes together."""

import json

import pytest

from schemas.disputes import DisputeReported
from services.triage.correlation import Hasher, identifier_keys
from tests.support.samples import report_payload

HASHER = Hasher(b"k" * 32)


def _report(*parties: dict) -> DisputeReported:
    return DisputeReported.model_validate_json(json.dumps(report_payload(parties=[{"role": "complainant", "kind": "person", "name": "李**"} | p for p in parties])))


# (case, parties, the identifiers that count)
KEYS = [
    ("full phone and ID number", [{"phone": "13900000001", "id_number": "330681199001011234"}],
     {("phone", "13900000001"), ("id", "330681199001011234")}),
    ("+86 and separators", [{"phone": "+86 139-0000-0001"}], {("phone", "13900000001")}),
    ("masked phone and ID number", [{"phone": "139****0001", "id_number": "3306**********1234"}], set()),
    ("all stars", [{"phone": "****", "id_number": "********"}], set()),
    ("one of each", [{"phone": "139****0001"}, {"phone": "13700000002"}], {("phone", "13700000002")}),
]


@pytest.mark.parametrize(("parties", "counted"), [(p, c) for _, p, c in KEYS], ids=[k for k, _, _ in KEYS])
def test_only_full_identifiers_become_correlation_keys(parties, counted):
    by_identifier = {"id_number": "id", "phone": "phone"}
    expected = {name: {HASHER(kind, value) for kind, value in counted if kind == hashed} for name, hashed in by_identifier.items()}
    assert identifier_keys(_report(*parties), HASHER) == expected
