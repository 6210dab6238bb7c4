"""deploy/ is usable as written: every file parses, every variable is a real setting, dashboards and alerts name real metrics."""

import json
import re
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from schemas.catalog import DEPARTMENT_PLACEHOLDER, SERVICES
from services.dispatch.metrics import DispatchMetrics
from services.dispatch.settings import DispatchSettings
from services.followup.metrics import FollowupMetrics
from services.followup.settings import FollowupSettings
from services.runtime.settings import ClockSettings, KafkaSettings, is_placeholder
from services.triage.metrics import TriageMetrics
from services.triage.settings import TriageSettings
from services.triage.signing import public_key_text

DEPLOY = Path(__file__).parents[2] / "deploy"
YAML_FILES = sorted(DEPLOY.rglob("*.yml")) + sorted(DEPLOY.rglob("*.yaml"))
SETTINGS = [(KafkaSettings, "KAFKA_"), (ClockSettings, "FENGQIAO_CLOCK_"), (TriageSettings, "TRIAGE_"),
            (DispatchSettings, "DISPATCH_"), (FollowupSettings, "FOLLOWUP_")]


def known_variables() -> set[str]:
    names = set()
    for cls, prefix in SETTINGS:
        for field, info in cls.model_fields.items():
            names.add(info.validation_alias if isinstance(info.validation_alias, str) else f"{prefix}{field.upper()}")
    return names


def documents(path: Path) -> list:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_yaml_file_parses(path):
    assert documents(path)


def used_variables() -> dict[str, set[str]]:
    used: dict[str, set[str]] = {}
    compose = documents(DEPLOY / "compose.yaml")[0]
    for name, service in compose["services"].items():
        if name in ("triage", "dispatch", "followup", "topics"):
            used[f"compose:{name}"] = set(service.get("environment", {}))
    for path in (DEPLOY / "k8s").glob("*.yaml"):
        for doc in documents(path):
            if doc["kind"] in ("ConfigMap", "Secret"):
                used[f"k8s:{doc['metadata']['name']}"] = set(doc.get("data", {})) | set(doc.get("stringData", {}))
            if doc["kind"] == "Deployment":
                [container] = doc["spec"]["template"]["spec"]["containers"]
                used[f"k8s:{path.stem}"] = {e["name"] for e in container["env"]}
    used["Dockerfile"] = set(re.findall(r"\b([A-Z][A-Z0-9_]+)=", (DEPLOY / "Dockerfile").read_text())) - {"PYTHONUNBUFFERED", "PIP_NO_CACHE_DIR"}
    return used


def test_every_environment_variable_is_a_setting():
    known = known_variables()
    for where, names in used_variables().items():
        assert names <= known, f"{where}: unknown {sorted(names - known)}"


def test_keda_scales_each_service_on_the_topics_it_consumes():
    for name, service in SERVICES.items():
        docs = {d["kind"]: d for d in documents(DEPLOY / "k8s" / f"{name}.yaml")}
        triggers = docs["ScaledObject"]["spec"]["triggers"]
        # A per-department channel is twenty topics: its trigger names none, and KEDA sums the group's lag over all.
        expected = {None if DEPARTMENT_PLACEHOLDER in c.topic else c.topic for c in service.consumes}
        assert {t["metadata"].get("topic") for t in triggers} == expected
        group = {"triage": TriageSettings, "dispatch": DispatchSettings, "followup": FollowupSettings}[name].model_fields["group_id"].default
        assert all(t["metadata"]["consumerGroup"].startswith(group) for t in triggers)
        assert docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]["args"] == [name]


def defined_metrics() -> set[str]:
    registry = CollectorRegistry()
    TriageMetrics(registry), DispatchMetrics(registry), FollowupMetrics(registry)
    names = set()
    for family in registry.collect():
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    return names


def referenced_metrics(text: str) -> set[str]:
    return set(re.findall(r"\bfengqiao_[a-z_]+", text))


def test_dashboard_and_alerts_name_real_metrics():
    defined = defined_metrics() | {name + "_total" for name in defined_metrics()}
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "fengqiao.json").read_text(encoding="utf-8"))
    expressions = " ".join(t["expr"] for panel in dashboard["panels"] for t in panel["targets"])
    alerts = (DEPLOY / "prometheus" / "alerts.yml").read_text(encoding="utf-8")
    for text in (expressions, alerts):
        assert referenced_metrics(text) and referenced_metrics(text) <= defined, referenced_metrics(text) - defined
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    for topic in ("throughput", "level", "open work orders", "overdue", "closure", "success", "dead letters", "lag"):
        assert topic in titles


def manifest_placeholders() -> list:
    """List every (variable, value) the Kubernetes manifests ship as a CHANGE-ME placeholder, named by variable."""
    return [
        pytest.param(name, value, id=name)
        for path in sorted((DEPLOY / "k8s").glob("*.yaml"))
        for doc in documents(path)
        if doc["kind"] in ("Secret", "ConfigMap")
        for name, value in (doc.get("stringData", {}) | doc.get("data", {})).items()
        if is_placeholder(str(value))
    ]


def test_the_manifests_secrets_are_placeholders():
    assert {p.values[0] for p in manifest_placeholders()} >= {"DATABASE_URL", "TRIAGE_HMAC_KEY"}


@pytest.mark.parametrize(("name", "value"), manifest_placeholders())
def test_production_refuses_each_placeholder_the_manifests_ship(monkeypatch, name, value):
    # Each variable alone is the placeholder, the others valid: the refusal is that variable's own.
    monkeypatch.setenv("FENGQIAO_ENV", "production")
    monkeypatch.setenv("TRIAGE_HMAC_KEY", "a-real-key-of-thirty-two-bytes-x")
    monkeypatch.setenv("TRIAGE_RULES_PUBLIC_KEYS", public_key_text(Ed25519PrivateKey.generate().public_key()))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv(name, value)
    field = name.removeprefix("TRIAGE_").lower()
    with pytest.raises(ValidationError, match=f"{name}|{field}"):
        TriageSettings()
