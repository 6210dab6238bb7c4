"""Fengqiao services: triage, dispatch and follow-up, plus the runtime they share."""
