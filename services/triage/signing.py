"""Signed rulesets: an Ed25519 signature, detached, over the exact bytes of a rules text.

The envelope is the same two fields wherever a ruleset travels:

* on `rules.triage`, record headers `rules_key_id` and `rules_signature` beside the unchanged YAML value;
* for a rules file, a sidecar file next to it, `<rules file>.sig` (`rules.yaml.sig`), holding the same two
  fields as YAML lines: `rules_key_id: 3f2a...` and `rules_signature: <base64>`.

The rules text itself is never rewritten, so `rules check|explain|backtest` and diffs read it as before, and
the signature covers every byte an operator reviewed (comments and line endings included). A key id is the
first 16 hex digits of the SHA-256 of the raw public key: it is derived, never configured, so trusting a key
is only listing it, and rotation is listing the new key beside the old one, signing with the new one, then
dropping the old.

A watched rules file and its sidecar change in two steps. Write the new `.sig` first, then move the new rules
file into place: while the text is still the running one, a new `.sig` alone changes nothing, whereas a new text
seen beside the old `.sig` is refused (counted once as `bad_signature`) until the `.sig` catches up at the next
poll. A Kubernetes ConfigMap holding both swaps them together.

Verification refuses with a closed set of reasons, the label values of the ruleset rejection metric:
`unsigned` (no signature), `unknown_key` (a key id that no trusted key has), `bad_signature` (not base64,
the wrong length, or not made by that key over these bytes).
"""

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from schemas.rules import RULES_KEY_ID_HEADER, RULES_SIGNATURE_HEADER
from services.triage.ruleset import RulesetError, check_newer

SIDECAR_SUFFIX = ".sig"
_SIGNATURE_BYTES = 64
_PUBLIC_KEY_BYTES = 32


class SignatureError(RulesetError):
    """A ruleset whose signature does not prove it came from a trusted key; `reason` unsigned, unknown_key or bad_signature."""

    def __init__(self, reason: str, message: str):
        super().__init__(message, reason=reason)


@dataclass(frozen=True)
class Signature:
    """A detached signature and the id of the key that made it, both as carried (text, base64)."""

    key_id: str
    value: str


def key_id(public_key: Ed25519PublicKey) -> str:
    """Return the id of a public key: the first 16 hex digits of the SHA-256 of its raw bytes."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_key_text(public_key: Ed25519PublicKey) -> str:
    """Return a public key as the base64 of its 32 raw bytes, the form TRIAGE_RULES_PUBLIC_KEYS lists."""
    return base64.b64encode(public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)).decode()


def parse_public_key(text: str) -> Ed25519PublicKey:
    """Read an Ed25519 public key given as PEM or as the base64 of its raw bytes; raise ValueError otherwise."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode())
            if not isinstance(key, Ed25519PublicKey):
                raise ValueError("not an Ed25519 key")
            return key
        raw = base64.b64decode(text, validate=True)
        if len(raw) != _PUBLIC_KEY_BYTES:
            raise ValueError(f"{len(raw)} bytes, an Ed25519 key has {_PUBLIC_KEY_BYTES}")
        return Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, TypeError, binascii.Error) as error:
        # The key text itself is not secret, but the start is enough to find the wrong entry.
        raise ValueError(f"public key {text[:12]!r}...: not an Ed25519 public key (PEM or base64 of 32 bytes): {error}") from None


def split_keys(value: str) -> tuple[str, ...]:
    """Return the keys of a TRIAGE_RULES_PUBLIC_KEYS value: a JSON list, or comma-separated (PEM has no commas)."""
    stripped = value.strip()
    if stripped.startswith("["):
        return tuple(json.loads(stripped))
    return tuple(key.strip() for key in stripped.split(",") if key.strip())


def trusted_keys(texts: Iterable[str]) -> dict[str, Ed25519PublicKey]:
    """Return the public keys by key id."""
    return {key_id(key): key for key in map(parse_public_key, texts)}


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    """Read an unencrypted PKCS#8 PEM Ed25519 private key; raise ValueError otherwise."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as error:
        raise ValueError(f"not an unencrypted PEM private key: {type(error).__name__}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("not an Ed25519 private key")
    return key


def private_key_pem(private_key: Ed25519PrivateKey) -> bytes:
    """Return a private key as unencrypted PKCS#8 PEM, what `load_private_key` reads."""
    return private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def sign(data: bytes, private_key: Ed25519PrivateKey) -> Signature:
    """Sign the exact bytes of a rules text."""
    return Signature(key_id(private_key.public_key()), base64.b64encode(private_key.sign(data)).decode())


def verify(data: bytes, signature: Signature | None, keys: Mapping[str, Ed25519PublicKey]) -> str:
    """Return the key id that signed these bytes; raise SignatureError with the reason otherwise."""
    if signature is None or not signature.value:
        raise SignatureError("unsigned", "signature: the ruleset is not signed")
    key = keys.get(signature.key_id)
    if key is None:
        # The id is a hash prefix the sender chose; cut it so a hostile header cannot flood the log.
        raise SignatureError("unknown_key", f"signature: key id {signature.key_id[:32]!r} is not a trusted key")
    try:
        raw = base64.b64decode(signature.value, validate=True)
    except (ValueError, binascii.Error):
        raise SignatureError("bad_signature", "signature: not base64") from None
    if len(raw) != _SIGNATURE_BYTES:
        raise SignatureError("bad_signature", f"signature: {len(raw)} bytes, an Ed25519 signature has {_SIGNATURE_BYTES}")
    try:
        key.verify(raw, data)
    except InvalidSignature:
        raise SignatureError("bad_signature", f"signature: does not match the text for key {signature.key_id}") from None
    return signature.key_id


def from_headers(headers: Mapping[str, str]) -> Signature | None:
    """Return the signature carried in a rules record's headers, None when it has none."""
    value = headers.get(RULES_SIGNATURE_HEADER)
    if value is None:
        return None
    return Signature(headers.get(RULES_KEY_ID_HEADER, ""), value)


def to_headers(signature: Signature) -> dict[str, str]:
    """Return the record headers carrying a signature on rules.triage."""
    return {RULES_KEY_ID_HEADER: signature.key_id, RULES_SIGNATURE_HEADER: signature.value}


def sidecar_path(rules_file: Path) -> Path:
    """Return where a rules file's signature lives: the same name with `.sig` appended."""
    return rules_file.with_name(rules_file.name + SIDECAR_SUFFIX)


def format_sidecar(signature: Signature) -> str:
    """Return the text of a signature sidecar file."""
    return "".join(f"{name}: {value}\n" for name, value in to_headers(signature).items())


def parse_sidecar(text: str) -> Signature | None:
    """Read a sidecar's `name: value` lines; None when it carries no signature."""
    fields = {}
    for line in text.splitlines():
        name, _, value = line.partition(":")
        fields[name.strip()] = value.strip()
    return from_headers(fields)


def read_sidecar(rules_file: Path) -> Signature | None:
    """Return the signature next to a rules file, None when there is no sidecar."""
    try:
        text = sidecar_path(rules_file).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    return parse_sidecar(text)


@dataclass(frozen=True)
class SignaturePolicy:
    """Which rulesets may serve: with trusted keys, only ones they signed; with none (development), any."""

    keys: Mapping[str, Ed25519PublicKey]

    @property
    def enforced(self) -> bool:
        """Return whether signatures are checked."""
        return bool(self.keys)

    def check(self, data: bytes, signature: Signature | None) -> None:
        """Raise SignatureError unless these bytes may serve."""
        if self.enforced:
            verify(data, signature, self.keys)

    def screen(self, text: str, running: str | None, signature: Signature | None) -> None:
        """Refuse a ruleset offered while `running` serves: the signature first, then the version, both before any compile."""
        # The signature first: the cheapest refusal, and nothing of an unproven text is parsed.
        self.check(text.encode("utf-8", errors="replace"), signature)
        check_newer(text, running)


def read_signed(rules_file: Path) -> tuple[str, Signature | None]:
    """Return a rules file's text, its bytes unchanged (no newline translation), and the signature beside it."""
    return rules_file.read_bytes().decode("utf-8", errors="replace"), read_sidecar(rules_file)
