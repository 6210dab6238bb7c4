"""Secrets and reports' text stay out of sight: production refuses known and weak keys without quoting them, and what a
report says never reaches a log line or a dead letter's reason, even when the database refuses it."""

import json
import os
import subprocess
import sys
import uuid

import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from schemas.disputes import DISPUTES_INVALID, DISPUTES_REPORTED
from services.triage.signing import public_key_text
from tests.support.processes import produce, read_all, start_service
from tests.support.samples import report_payload

_GOOD_KEY = "k3y-of-thirty-two-random-bytes-0"
_PLACEHOLDER_URL = "postgresql+asyncpg://fengqiao:CHANGE-ME@127.0.0.1:1/fengqiao"


@pytest.mark.parametrize(
    ("secrets", "said", "secret"),
    [
        ({}, "TRIAGE_HMAC_KEY is required when FENGQIAO_ENV=production", None),
        ({"TRIAGE_HMAC_KEY": "fengqiao-development-only-key"}, "the development key", "fengqiao-development-only-key"),
        ({"TRIAGE_HMAC_KEY": "CHANGE-ME-to-a-random-secret"}, "CHANGE-ME placeholder", "CHANGE-ME-to-a-random-secret"),
        ({"TRIAGE_HMAC_KEY": "sh0rt-but-secret"}, "TRIAGE_HMAC_KEY has 16 bytes; production needs at least 32", "sh0rt-but-secret"),
        ({"TRIAGE_HMAC_KEY": _GOOD_KEY, "DATABASE_URL": _PLACEHOLDER_URL}, "DATABASE_URL still has the manifests' CHANGE-ME password", _GOOD_KEY),
    ],
    ids=["no-key", "development-key", "placeholder-key", "short-key", "placeholder-database-password"],
)
def test_production_triage_refuses_known_and_weak_secrets_in_one_line_that_quotes_none(tmp_path, secrets, said, secret):
    env = {k: v for k, v in os.environ.items() if k not in ("TRIAGE_HMAC_KEY", "DATABASE_URL")}
    rules_key = public_key_text(Ed25519PrivateKey.generate().public_key())  # production's other requirement, met
    env |= {"FENGQIAO_ENV": "production", "TRIAGE_DATA_DIR": str(tmp_path), "TRIAGE_RULES_PUBLIC_KEYS": rules_key, **secrets}
    done = subprocess.run([sys.executable, "-m", "services.runtime", "triage"], env=env, capture_output=True, timeout=60, check=False)
    output = (done.stdout + done.stderr).decode()
    assert done.returncode == 2, output
    assert done.stderr.decode().startswith("triage cannot start: ") and said in output, output
    assert output.count("\n") == 1 and "Traceback" not in output, output
    assert secret is None or secret not in output


# A limit a DBA might set; the planted report exceeds it, every other report fits well under it.
_REPORT_LIMIT = 4000


async def test_a_report_the_database_refuses_leaves_no_trace_of_its_text_in_logs_or_dead_letter_reasons(
    embedded_broker, kafka_settings, contract_topics_created, empty_postgres_url, tmp_path
):
    bootstrap, url = embedded_broker.bootstrap_servers, empty_postgres_url
    marker = f"FQMARK{uuid.uuid4().hex}"
    run = uuid.uuid4().hex[:8]
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_TOPIC_PREFIX": kafka_settings.topic_prefix,
        "TRIAGE_GROUP_ID": f"triage-{run}",
        "TRIAGE_DATA_DIR": str(tmp_path / "triage"),
        "DISPATCH_GROUP_ID": f"dispatch-{run}",
        "DATABASE_URL": url,
        # Everything every library logs, the framework's per-batch lines included.
        "TRIAGE_LOG_LEVEL": "DEBUG",
        "DISPATCH_LOG_LEVEL": "DEBUG",
    }
    triage = start_service("triage", env | {"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'triage.db'}"}, tmp_path)
    dispatch = start_service("dispatch", env, tmp_path)
    try:
        await triage.wait_ready()
        await dispatch.wait_ready()
        # A real refusal by PostgreSQL, from the store's own insert: a CHECK on the size of the stored report.
        # Its error quotes the failing row, marker and all (DETAIL: Failing row contains ...).
        connection = await asyncpg.connect(url.replace("+asyncpg", ""))
        try:
            await connection.execute(f"ALTER TABLE dispatch_disputes ADD CONSTRAINT report_size CHECK (length(report) <= {_REPORT_LIMIT})")
        finally:
            await connection.close()

        parties = report_payload()["parties"]
        parties[0]["name"] = marker
        planted = report_payload(
            event_id=f"evt-{marker[:40]}",
            dispute_id="D-marked",
            description=(f"{marker} 邻里纠纷 " * 200)[:4900],
            parties=parties,
        )
        await produce(bootstrap, kafka_settings.topic(DISPUTES_REPORTED), [(b"D-marked", json.dumps(planted).encode())])

        async def refused() -> bool:
            dead = await read_all(bootstrap, [kafka_settings.topic(DISPUTES_INVALID)])
            return any(dict(r.headers).get("dlq_reason") == b"unprocessable: IntegrityError" for r in dead)

        await dispatch.wait_for(refused, 90)
    finally:
        assert dispatch.stop() == 0, dispatch.log_tail()
        assert triage.stop() == 0, triage.log_tail()

    for service in (triage, dispatch):
        text = service.log_path.read_text(errors="replace")
        assert text.count("\n") > 10, f"{service.service} logged almost nothing: the test would prove nothing"
        assert marker not in text, [line for line in text.splitlines() if marker in line][:3]
    assert "IntegrityError" in dispatch.log_path.read_text()  # the refusal was logged, by its type alone
    for record in await read_all(bootstrap, [kafka_settings.topic(DISPUTES_INVALID)]):
        assert all(marker.encode() not in value for _, value in record.headers), record.headers
