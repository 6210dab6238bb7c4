"""Fixtures of the triage tests that run the service as a process."""

import shutil
import uuid

import pytest

from services.triage.ruleset import DEFAULT_RULES


@pytest.fixture
def triage_env(embedded_broker, kafka_settings, contract_topics_created, tmp_path):
    rules = tmp_path / "rules.yaml"
    shutil.copy(DEFAULT_RULES, rules)
    return {
        "KAFKA_BOOTSTRAP_SERVERS": embedded_broker.bootstrap_servers,
        "KAFKA_TOPIC_PREFIX": kafka_settings.topic_prefix,
        "TRIAGE_GROUP_ID": f"triage-{uuid.uuid4().hex[:8]}",
        "TRIAGE_RULES_FILE": str(rules),
        "TRIAGE_RULES_POLL_SECONDS": "0.2",
        "TRIAGE_BATCH_SIZE": "100",
        "TRIAGE_HMAC_KEY": "test-hmac-key-0123456789",
        "TRIAGE_DATA_DIR": str(tmp_path / "var"),
    }
