"""Only rulesets signed by a trusted key serve; a refusal names its reason and comes before any version check or compile."""

import asyncio
import base64
import dataclasses
import logging

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from services.runtime.reload import watch_file
from services.triage import canary
from services.triage.app import rules_holder, starting_rules
from services.triage.metrics import TriageMetrics
from services.triage.ruleset import DEFAULT_RULES
from services.triage.settings import TriageSettings
from services.triage.signing import (
    Signature,
    SignatureError,
    SignaturePolicy,
    format_sidecar,
    from_headers,
    key_id,
    parse_public_key,
    parse_sidecar,
    public_key_text,
    read_signed,
    sidecar_path,
    sign,
    to_headers,
    trusted_keys,
    verify,
)
from tests.support.conditions import wait_for

TEXT = DEFAULT_RULES.read_text(encoding="utf-8")
DATA = TEXT.encode()
TRUSTED = Ed25519PrivateKey.generate()
OTHER = Ed25519PrivateKey.generate()
KEYS = trusted_keys([public_key_text(TRUSTED.public_key())])
GOOD = sign(DATA, TRUSTED)


def newer(version: str = "2026.11.2") -> str:
    return TEXT.replace('version: "2026.11.1"', f'version: "{version}"')


def replaced(**fields: str) -> Signature:
    return dataclasses.replace(GOOD, **fields)


# (case, bytes offered, signature carried, reason refused or None when it verifies)
VERIFICATIONS = [
    ("good", DATA, GOOD, None),
    ("unsigned", DATA, None, "unsigned"),
    ("empty signature", DATA, replaced(value=""), "unsigned"),
    ("signed by an untrusted key", DATA, sign(DATA, OTHER), "unknown_key"),
    ("another key's signature under a trusted key's id", DATA, replaced(value=sign(DATA, OTHER).value), "bad_signature"),
    ("tampered text", DATA.replace(b"2026.11.1", b"2026.11.9"), GOOD, "bad_signature"),
    ("one byte added", DATA + b"\n", GOOD, "bad_signature"),
    ("unknown key id", DATA, replaced(key_id="0123456789abcdef"), "unknown_key"),
    ("no key id", DATA, replaced(key_id=""), "unknown_key"),
    ("truncated signature", DATA, replaced(value=base64.b64encode(base64.b64decode(GOOD.value)[:40]).decode()), "bad_signature"),
    ("signature cut mid-base64", DATA, replaced(value=GOOD.value[:-3]), "bad_signature"),
    ("signature not base64", DATA, replaced(value="not base64 at all!"), "bad_signature"),
]


@pytest.mark.parametrize("case, data, signature, reason", VERIFICATIONS, ids=[row[0] for row in VERIFICATIONS])
def test_verification(case, data, signature, reason):
    if reason is None:
        assert verify(data, signature, KEYS) == GOOD.key_id
        return
    with pytest.raises(SignatureError) as refused:
        verify(data, signature, KEYS)
    assert refused.value.reason == reason
    assert str(refused.value).startswith("signature: ")


def test_a_key_id_is_derived_from_the_public_key_whatever_form_it_is_given_in():
    pem = TRUSTED.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    assert key_id(parse_public_key(pem)) == key_id(parse_public_key(public_key_text(TRUSTED.public_key()))) == GOOD.key_id
    assert len(GOOD.key_id) == 16 and GOOD.key_id != sign(DATA, OTHER).key_id


@pytest.mark.parametrize("text", ["", "CHANGE-ME", base64.b64encode(b"x" * 31).decode(), "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"])
def test_a_malformed_public_key_is_refused(text):
    with pytest.raises(ValueError, match="not an Ed25519 public key"):
        parse_public_key(text)


def test_headers_and_sidecar_carry_the_same_two_fields():
    assert from_headers(to_headers(GOOD)) == GOOD == parse_sidecar(format_sidecar(GOOD))
    assert format_sidecar(GOOD) == f"rules_key_id: {GOOD.key_id}\nrules_signature: {GOOD.value}\n"
    assert from_headers({}) is None and parse_sidecar("") is None


def test_a_signed_file_verifies_byte_for_byte_with_its_line_endings(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_bytes(DATA.replace(b"\n", b"\r\n"))
    sidecar_path(rules).write_text(format_sidecar(sign(rules.read_bytes(), TRUSTED)), encoding="utf-8")
    text, signature = read_signed(rules)
    SignaturePolicy(KEYS).check(text.encode(), signature)
    rules.with_name("unsigned.yaml").write_bytes(DATA)
    assert read_signed(rules.with_name("unsigned.yaml"))[1] is None


# (case, policy keys, signature of the offered text, reason refused or None when it serves)
OFFERS = [
    ("development, no keys: unsigned serves", {}, None, None),
    ("development, no keys: a signature is not checked", {}, replaced(value="garbage"), None),
    ("keys configured: signed serves", KEYS, "sign", None),
    ("keys configured: unsigned is refused", KEYS, None, "unsigned"),
    ("keys configured: untrusted key is refused", KEYS, "sign-other", "unknown_key"),
]


@pytest.mark.parametrize("case, keys, signature, reason", OFFERS, ids=[row[0] for row in OFFERS])
def test_offers_on_the_topic_serve_only_as_the_policy_allows(case, keys, signature, reason):
    registry = CollectorRegistry()
    holder = rules_holder(TEXT, TriageMetrics(registry), SignaturePolicy(keys), GOOD)
    text = newer()
    proof = {"sign": sign(text.encode(), TRUSTED), "sign-other": sign(text.encode(), OTHER)}.get(signature, signature)
    assert holder.offer(text, "topic", proof) is (reason is None)
    assert holder.version == ("2026.11.2" if reason is None else "2026.11.1")
    counted = {"reason": reason or "", "result": "rejected" if reason else "accepted", "origin": "topic"}
    assert registry.get_sample_value("fengqiao_triage_ruleset_reloads_total", counted) == 1


def test_the_signature_is_checked_before_the_version_and_nothing_unsigned_is_compiled(monkeypatch, caplog):
    registry = CollectorRegistry()
    holder = rules_holder(TEXT, TriageMetrics(registry), SignaturePolicy(KEYS), GOOD)
    compiled = []
    monkeypatch.setattr(canary, "Grader", lambda ruleset: compiled.append(ruleset.version))
    with caplog.at_level(logging.ERROR, logger="services.runtime.reload"):
        # Older and unsigned: the refusal names the signature, not the version.
        assert holder.offer(newer("2026.10.1"), "topic", None) is False
        assert holder.offer(newer("2026.11.5"), "topic", sign(newer("2026.11.4").encode(), TRUSTED)) is False
    assert compiled == [] and holder.version == "2026.11.1"
    assert "rejected ruleset from topic, keeping 2026.11.1: signature: the ruleset is not signed" in caplog.text
    for reason in ("unsigned", "bad_signature"):
        assert registry.get_sample_value("fengqiao_triage_ruleset_reloads_total", {"reason": reason, "result": "rejected", "origin": "topic"}) == 1
    assert GOOD.value not in caplog.text


def settings_for(tmp_path, monkeypatch, keys: str | None, signed_by: Ed25519PrivateKey | None, env: str = "development"):
    rules = tmp_path / "rules.yaml"
    rules.write_bytes(DATA)
    if signed_by:
        sidecar_path(rules).write_text(format_sidecar(sign(DATA, signed_by)), encoding="utf-8")
    monkeypatch.setenv("FENGQIAO_ENV", env)
    monkeypatch.setenv("TRIAGE_HMAC_KEY", "test-hmac-key-0123456789")
    monkeypatch.setenv("TRIAGE_RULES_FILE", str(rules))
    if keys is not None:
        monkeypatch.setenv("TRIAGE_RULES_PUBLIC_KEYS", keys)
    return TriageSettings()


TRUSTED_TEXT = public_key_text(TRUSTED.public_key())
OTHER_TEXT = public_key_text(OTHER.public_key())

# (case, FENGQIAO_ENV, TRIAGE_RULES_PUBLIC_KEYS, key the file is signed with, reason it cannot start or None)
STARTS = [
    ("development, no keys, unsigned file", "development", None, None, None),
    ("development, keys, signed file", "development", TRUSTED_TEXT, TRUSTED, None),
    ("development, keys, unsigned file", "development", TRUSTED_TEXT, None, "unsigned"),
    ("production, signed file", "production", TRUSTED_TEXT, TRUSTED, None),
    ("production, two keys during rotation", "production", f"{OTHER_TEXT}, {TRUSTED_TEXT}", TRUSTED, None),
    ("production, JSON list of keys", "production", f'["{OTHER_TEXT}", "{TRUSTED_TEXT}"]', TRUSTED, None),
    ("production, unsigned file", "production", TRUSTED_TEXT, None, "unsigned"),
    ("production, file signed by a key not listed", "production", TRUSTED_TEXT, OTHER, "unknown_key"),
]


@pytest.mark.parametrize("case, env, keys, signed_by, reason", STARTS, ids=[row[0] for row in STARTS])
def test_the_rules_file_at_start(tmp_path, monkeypatch, case, env, keys, signed_by, reason):
    settings = settings_for(tmp_path, monkeypatch, keys, signed_by, env)
    metrics = TriageMetrics(CollectorRegistry())
    if reason is None:
        assert starting_rules(settings, metrics, settings.signature_policy()).version == "2026.11.1"
        return
    with pytest.raises(SignatureError) as refused:
        starting_rules(settings, metrics, settings.signature_policy())
    assert refused.value.reason == reason
    assert f"fengqiao rules sign --key PRIVATE_KEY_FILE {settings.rules_file}" in str(refused.value)


@pytest.mark.parametrize("keys, words", [(None, "TRIAGE_RULES_PUBLIC_KEYS is required"), ("CHANGE-ME", "not an Ed25519 public key")])
def test_production_refuses_to_start_without_usable_keys(tmp_path, monkeypatch, keys, words):
    with pytest.raises(ValidationError, match=words):
        settings_for(tmp_path, monkeypatch, keys, TRUSTED, "production")


async def test_a_signed_file_update_is_taken_up_and_an_unsigned_one_refused(tmp_path, monkeypatch):
    settings = settings_for(tmp_path, monkeypatch, TRUSTED_TEXT, TRUSTED)
    registry = CollectorRegistry()
    holder = starting_rules(settings, TriageMetrics(registry), settings.signature_policy())
    watcher = asyncio.create_task(watch_file(holder, settings.rules_file, 0.02, read_signed))

    def counted(result: str, reason: str):
        async def check() -> bool:
            return registry.get_sample_value("fengqiao_triage_ruleset_reloads_total", {"result": result, "origin": "file", "reason": reason}) == 1

        return check

    try:
        sidecar_path(settings.rules_file).unlink()
        settings.rules_file.write_text(newer("2026.11.2"), encoding="utf-8")
        await wait_for(counted("rejected", "unsigned"), 5)
        assert holder.version == "2026.11.1"
        # Signing the same text afterwards is a new pair, offered again.
        sidecar_path(settings.rules_file).write_text(format_sidecar(sign(newer("2026.11.2").encode(), TRUSTED)), encoding="utf-8")
        await wait_for(counted("accepted", ""), 5)
        assert holder.version == "2026.11.2"
    finally:
        watcher.cancel()
