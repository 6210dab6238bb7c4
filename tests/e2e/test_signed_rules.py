"""Signed rules through the real broker: triage takes up a newer ruleset signed by a trusted key, and only that."""

import asyncio
import dataclasses
import json

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from schemas.disputes import DISPUTES_REPORTED, DisputeTriaged
from schemas.rules import RULES_TRIAGE, RULES_TRIAGE_KEY
from services.cli import app
from services.runtime.settings import KafkaSettings
from services.triage.cli import _produce
from services.triage.signing import Signature, format_sidecar, private_key_pem, public_key_text, sidecar_path, sign, to_headers
from tests.support.conditions import wait_for
from tests.support.processes import produce
from tests.support.samples import report_payload
from tests.support.triage import outputs, start_triage

TRUSTED = Ed25519PrivateKey.generate()
UNTRUSTED = Ed25519PrivateKey.generate()


def tampered(signature: Signature) -> Signature:
    raw = bytearray(signature.value.encode())
    raw[10] = ord("A") if raw[10] != ord("A") else ord("B")
    return dataclasses.replace(signature, value=raw.decode())


# (case, version offered, how it is signed: None unsigned, else a function of the text's bytes, reason refused)
REFUSED = [
    ("unsigned", "2026.11.2", None, "unsigned"),
    ("signed by a key triage does not trust", "2026.11.3", lambda data: sign(data, UNTRUSTED), "unknown_key"),
    ("signature altered in transit", "2026.11.4", lambda data: tampered(sign(data, TRUSTED)), "bad_signature"),
    ("signature of another text", "2026.11.5", lambda data: sign(data + b"\n# reviewed", TRUSTED), "bad_signature"),
]


async def test_a_signed_ruleset_is_taken_up_and_unsigned_or_badly_signed_ones_refused(embedded_broker, kafka_settings, triage_env, tmp_path):
    bootstrap = embedded_broker.bootstrap_servers
    rules = tmp_path / "rules.yaml"
    text = rules.read_text(encoding="utf-8")
    sidecar_path(rules).write_text(format_sidecar(sign(rules.read_bytes(), TRUSTED)), encoding="utf-8")
    env = triage_env | {"FENGQIAO_ENV": "production", "TRIAGE_RULES_PUBLIC_KEYS": public_key_text(TRUSTED.public_key())}
    kafka = KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=kafka_settings.topic_prefix)
    rules_topic = kafka.topic(RULES_TRIAGE)
    service = start_triage(env, tmp_path)
    sent = iter(range(10_000))

    def version(number: str) -> bytes:
        return text.replace('version: "2026.11.1"', f'version: "{number}"').encode()

    async def graded_by() -> str:
        n = next(sent)
        payload = report_payload(event_id=f"s-{n}", dispute_id="D-s")
        await produce(bootstrap, kafka.topic(DISPUTES_REPORTED), [(b"D-s", json.dumps(payload).encode())])
        found: list[DisputeTriaged] = []

        async def graded() -> bool:
            found[:] = [t for t in (await outputs(bootstrap, kafka))[0] if t.source_event_id == f"s-{n}"]
            return bool(found)

        await wait_for(graded, 60)
        return found[0].ruleset_version

    def counted(reason: str, count: int):
        async def check() -> bool:
            line = f'fengqiao_triage_ruleset_reloads_total{{origin="topic",reason="{reason}",result="rejected"}}'
            return await service.metric(line) == count

        return check

    try:
        await service.wait_ready()
        assert await graded_by() == "2026.11.1"

        expected: dict[str, int] = {}
        for case, number, signer, reason in REFUSED:
            data = version(number)
            headers = to_headers(signer(data)) if signer else {}
            await _produce(kafka, rules_topic, RULES_TRIAGE_KEY, data, headers)
            expected[reason] = expected.get(reason, 0) + 1
            await wait_for(counted(reason, expected[reason]), 30)
            assert await service.metric('fengqiao_triage_ruleset_active{version="2026.11.1"}') == 1, case
        assert await graded_by() == "2026.11.1"
        log = service.log_tail(400)
        assert "rejected ruleset from topic, keeping 2026.11.1: signature: the ruleset is not signed" in log
        assert not any(to_headers(sign(version("2026.11.3"), UNTRUSTED))["rules_signature"] in line for line in log.splitlines())

        # Newer and signed by the trusted key, as an operator does it: sign and publish with the CLI.
        candidate, key = tmp_path / "candidate.yaml", tmp_path / "rules.pem"
        candidate.write_bytes(version("2026.11.6"))
        key.write_bytes(private_key_pem(TRUSTED))
        cli_env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "KAFKA_TOPIC_PREFIX": kafka.topic_prefix}
        for command in (["rules", "sign", "--key", str(key), str(candidate)], ["rules", "publish", str(candidate)]):
            # In a thread: publish runs its own event loop.
            result = await asyncio.to_thread(CliRunner().invoke, app, command, env=cli_env)
            assert result.exit_code == 0, result.output
        assert "published ruleset 2026.11.6" in result.output and "signed by key" in result.output

        async def active() -> bool:
            return await service.metric('fengqiao_triage_ruleset_active{version="2026.11.6"}') == 1

        await wait_for(active, 30)
        assert await graded_by() == "2026.11.6"
        assert await service.metric('fengqiao_triage_ruleset_reloads_total{origin="topic",reason="",result="accepted"}') == 1
    finally:
        assert service.stop() == 0, service.log_tail()


async def test_production_refuses_to_start_with_an_unsigned_rules_file(embedded_broker, triage_env, tmp_path):
    env = triage_env | {"FENGQIAO_ENV": "production", "TRIAGE_RULES_PUBLIC_KEYS": public_key_text(TRUSTED.public_key())}
    service = start_triage(env, tmp_path)
    assert await asyncio.to_thread(service.process.wait, 60) != 0
    assert f"triage cannot start: rules file {tmp_path / 'rules.yaml'}: signature: the ruleset is not signed" in service.log_tail(80)
    assert f"fengqiao rules sign --key PRIVATE_KEY_FILE {tmp_path / 'rules.yaml'}" in service.log_tail(80)
