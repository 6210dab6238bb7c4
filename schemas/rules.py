"""Rules distribution (topic `rules.triage`): compacted, keyed by service, the value a whole rules file (YAML text)."""

RULES_TRIAGE = "rules.triage"
RULES_TRIAGE_KEY = b"triage"
