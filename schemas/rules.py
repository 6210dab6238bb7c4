"""Rules distribution (topic `rules.triage`): compacted, keyed by service, the value a whole rules file (YAML text).

Each record carries the Ed25519 signature of its exact value bytes in two headers: `rules_key_id` (16 hex digits
naming the signing key) and `rules_signature` (base64 of the 64-byte signature). Triage with trusted keys
configured refuses a record without them (services/triage/signing.py).
"""

RULES_TRIAGE = "rules.triage"
RULES_TRIAGE_KEY = b"triage"
RULES_KEY_ID_HEADER = "rules_key_id"
RULES_SIGNATURE_HEADER = "rules_signature"
