"""The committed JSON Schemas and AsyncAPI documents must match the models."""

import json

from schemas.catalog import CONTRACTS, SERVICES
from schemas.generate import ASYNCAPI_DIR, JSON_DIR, drift


def test_committed_documents_match_the_models():
    assert drift() == [], "run `fengqiao schemas generate` and commit the result"


def test_every_contract_has_a_json_schema():
    assert {p.stem for p in JSON_DIR.glob("*.json")} == set(CONTRACTS)


def test_json_schema_says_timestamps_are_date_times():
    schema = json.loads((JSON_DIR / "DisputeReported.json").read_text())
    assert schema["properties"]["reported_at"]["format"] == "date-time"
    assert schema["additionalProperties"] is False


def test_each_service_asyncapi_names_its_topics():
    for name, service in SERVICES.items():
        document = json.loads((ASYNCAPI_DIR / f"{name}.json").read_text())
        assert document["asyncapi"].startswith("3.")
        addresses = {channel["address"] for channel in document["channels"].values()}
        assert addresses == {c.topic for c in service.consumes + service.produces}


def test_drift_is_detected(tmp_path, monkeypatch):
    import schemas.generate as generate

    stale = tmp_path / "json"
    stale.mkdir()
    (stale / "DisputeReported.json").write_text("{}\n")
    monkeypatch.setattr(generate, "JSON_DIR", stale)
    problems = generate.drift()
    assert "DisputeReported.json: differs" in problems
    assert "FollowupResult.json: differs" in problems
