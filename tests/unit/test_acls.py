"""Kafka ACLs as data: each principal gets exactly what its role needs, the committed files are what the catalogue says,
and compose runs Kafka with SCRAM and the authorizer, applying them."""

import re
import shlex
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from schemas.catalog import DEPARTMENT, SERVICES, expand
from schemas.followups import FOLLOWUPS_DUE, FOLLOWUPS_RESULTS, due_topic, results_topic
from schemas.workorders import DEPARTMENTS, WORKORDERS_UPDATES, updates_topic, work_order_topic
from services.cli import app as cli
from services.dispatch.app import create_app as dispatch_app
from services.dispatch.settings import DispatchSettings
from services.followup.app import create_app as followup_app
from services.followup.settings import FollowupSettings
from services.runtime.acls import (
    COMPOSE_END,
    EXPORTER,
    SCRIPT_PATH,
    STRIMZI_PATH,
    USERS_SCRIPT_PATH,
    Grant,
    all_grants,
    compose_file,
    department_group,
    department_principal,
    drift,
    password_variable,
    service_groups,
)
from services.runtime.settings import KafkaSettings
from services.runtime.topics import contract_topics
from services.triage.app import create_app as triage_app
from services.triage.settings import TriageSettings

COMPOSE = Path(__file__).parents[2] / "deploy" / "compose.yaml"
GRANTS = all_grants()


def topics(principal: str, operation: str) -> set[str]:
    return {g.resource for g in GRANTS[principal] if g.resource_type == "topic" and g.operation == operation}


def groups(principal: str) -> set[str]:
    return {g.resource for g in GRANTS[principal] if g.resource_type == "group"}


def test_the_committed_acl_files_are_what_the_catalogue_says():
    assert drift() == [], "run `fengqiao acls generate` (or `make schemas`) and commit the result"
    result = CliRunner().invoke(cli, ["acls", "check"])
    assert result.exit_code == 0 and "acls up to date" in result.output


APPS = [("triage", triage_app, TriageSettings), ("dispatch", dispatch_app, DispatchSettings), ("followup", followup_app, FollowupSettings)]


@pytest.mark.parametrize("name, create_app, settings", APPS, ids=[row[0] for row in APPS])
def test_each_service_may_read_exactly_the_groups_its_app_subscribes_with(name, create_app, settings, tmp_path):
    [broker] = create_app(settings(data_dir=tmp_path), KafkaSettings(bootstrap_servers="127.0.0.1:1"), registry=CollectorRegistry()).brokers
    subscribed = {s.group_id for s in broker.subscribers if s.group_id is not None}
    assert subscribed == set(service_groups()[name]) == groups(name)


EVERY_ORDERS = {work_order_topic(d) for d in DEPARTMENTS}
EVERY_UPDATES = {updates_topic(d) for d in DEPARTMENTS}
EVERY_RESULTS = {results_topic(d) for d in DEPARTMENTS}
EVERY_DUE = {due_topic(d) for d in DEPARTMENTS}

# (service, topics it reads, topics it writes): spelled out here, independently of the generator.
SERVICE_ROLES = [
    ("triage", {"disputes.reported", "disputes.reassess", "rules.triage"}, {"disputes.triaged", "disputes.invalid"}),
    ("dispatch", {"disputes.triaged"} | EVERY_UPDATES,
     EVERY_ORDERS | {"workorders.events", "disputes.reassess", "disputes.invalid", "workorders.updates.invalid"}),
    ("followup", {"workorders.events"} | EVERY_RESULTS,
     EVERY_DUE | {"followups.due", "disputes.reassess", "workorders.events.invalid", "followups.results.invalid"}),
]


@pytest.mark.parametrize("service, reads, writes", SERVICE_ROLES, ids=[row[0] for row in SERVICE_ROLES])
def test_each_service_reads_its_inputs_and_writes_its_outputs_and_nothing_else(service, reads, writes):
    assert topics(service, "Read") == reads
    assert topics(service, "Write") == writes
    assert topics(service, "Describe") == reads | writes
    # And as the catalogue has it: what it consumes, and what it produces beside its dead letters.
    assert {t for c in SERVICES[service].consumes for t in expand(c.topic)} <= reads
    assert {t for c in SERVICES[service].produces for t in expand(c.topic)} <= writes


@pytest.mark.parametrize("department", DEPARTMENTS)
def test_a_department_reads_its_orders_and_dues_and_writes_only_its_own_updates_and_results(department):
    principal = department_principal(department)
    assert set(GRANTS[principal]) == {
        Grant(principal, "topic", work_order_topic(department), "Read"),
        Grant(principal, "topic", work_order_topic(department), "Describe"),
        Grant(principal, "topic", due_topic(department), "Read"),
        Grant(principal, "topic", due_topic(department), "Describe"),
        Grant(principal, "topic", updates_topic(department), "Write"),
        Grant(principal, "topic", updates_topic(department), "Describe"),
        Grant(principal, "topic", results_topic(department), "Write"),
        Grant(principal, "topic", results_topic(department), "Describe"),
        Grant(principal, "group", department_group(department), "Read"),
    }
    assert {c.contract for c in DEPARTMENT.consumes} == {"DepartmentMessage", "FollowupMessage"}
    assert {c.contract for c in DEPARTMENT.produces} == {"WorkOrderUpdate", "FollowupResult"}


def test_each_department_topic_is_written_by_its_department_alone():
    writers: dict[str, set[str]] = {}
    for principal, grants in GRANTS.items():
        for grant in grants:
            if grant.resource_type == "topic" and grant.operation == "Write":
                writers.setdefault(grant.resource, set()).add(principal)
    for department in DEPARTMENTS:
        assert writers[updates_topic(department)] == writers[results_topic(department)] == {department_principal(department)}
        # Its orders come from dispatch alone: no department can forge another's, or its own.
        assert writers[work_order_topic(department)] == {"dispatch"}


def test_nobody_may_use_the_shared_development_topics_and_only_operators_read_the_shared_due_feed():
    granted = {g.resource for grants in GRANTS.values() for g in grants}
    assert WORKORDERS_UPDATES not in granted and FOLLOWUPS_RESULTS not in granted
    departments = [department_principal(d) for d in DEPARTMENTS]
    # followups.due is every department's dues: read by the operators (super users, no grant), written by follow-up alone.
    assert [p for p in GRANTS if FOLLOWUPS_DUE in topics(p, "Read")] == []
    assert [p for p in GRANTS if FOLLOWUPS_DUE in topics(p, "Write")] == ["followup"]
    assert len(set(departments)) == len(DEPARTMENTS) and set(GRANTS) == {"triage", "dispatch", "followup", *departments, EXPORTER}


@pytest.mark.parametrize("department", DEPARTMENTS)
def test_each_due_topic_is_read_by_its_department_alone_and_written_by_follow_up(department):
    readers = {p for p in GRANTS if due_topic(department) in topics(p, "Read")}
    writers = {p for p in GRANTS if due_topic(department) in topics(p, "Write")}
    assert (readers, writers) == ({department_principal(department)}, {"followup"})


def test_the_exporter_describes_every_production_topic_and_group_and_reads_nothing():
    every_group = {g for name in SERVICES for g in service_groups()[name]} | {department_group(d) for d in DEPARTMENTS}
    assert {(g.resource_type, g.operation) for g in GRANTS[EXPORTER]} == {("topic", "Describe"), ("group", "Describe")}
    assert topics(EXPORTER, "Describe") == {spec.name for spec in contract_topics(environment="production")}
    assert groups(EXPORTER) == every_group
    assert WORKORDERS_UPDATES not in topics(EXPORTER, "Describe") and FOLLOWUPS_RESULTS not in topics(EXPORTER, "Describe")


def script_grants(text: str) -> set[Grant]:
    """Read the grants back out of the kafka-acls.sh commands."""
    found = set()
    for line in text.splitlines():
        if not line.startswith('"$KAFKA_ACLS"'):
            continue
        words = shlex.split(line)
        assert words[words.index("--add") - 2:words.index("--add")] == ["--command-config", "$KAFKA_ADMIN_CONFIG"]
        assert words[-2:] == ["--resource-pattern-type", "literal"]
        principal = words[words.index("--allow-principal") + 1].removeprefix("User:")
        kind = "topic" if "--topic" in words else "group"
        resource = words[words.index(f"--{kind}") + 1]
        found |= {Grant(principal, kind, resource, words[i + 1]) for i, w in enumerate(words) if w == "--operation"}
    return found


def strimzi_grants(text: str) -> set[Grant]:
    """Read the grants back out of the KafkaUser resources, checking each is a SCRAM user with simple authorization."""
    found = set()
    for user in yaml.safe_load_all(text):
        assert (user["apiVersion"], user["kind"]) == ("kafka.strimzi.io/v1beta2", "KafkaUser")
        assert user["spec"]["authentication"] == {"type": "scram-sha-512"} and user["spec"]["authorization"]["type"] == "simple"
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", user["metadata"]["name"]), "a Kubernetes name"
        for acl in user["spec"]["authorization"]["acls"]:
            resource = acl["resource"]
            assert resource["patternType"] == "literal"
            found |= {Grant(user["metadata"]["name"], resource["type"], resource["name"], op) for op in acl["operations"]}
    return found


RENDERINGS = [(SCRIPT_PATH, script_grants), (STRIMZI_PATH, strimzi_grants)]


@pytest.mark.parametrize("path, read_back", RENDERINGS, ids=[row[0].name for row in RENDERINGS])
def test_each_rendering_grants_exactly_the_generated_grants(path, read_back):
    assert read_back(path.read_text(encoding="utf-8")) == {g for grants in GRANTS.values() for g in grants}


def test_every_principal_gets_a_scram_user():
    text = USERS_SCRIPT_PATH.read_text(encoding="utf-8")
    users = re.findall(r'^scram_user (\S+) "\$\{(\w+):-\}"$', text, re.MULTILINE)
    assert users == [(p, password_variable(p)) for p in GRANTS]


def compose():
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]


# (setting of the Kafka container, value): SCRAM for clients, KRaft's authorizer, closed unless an ACL allows.
BROKER_SETTINGS = [
    ("KAFKA_AUTHORIZER_CLASS_NAME", "org.apache.kafka.metadata.authorizer.StandardAuthorizer"),
    ("KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND", "false"),
    ("KAFKA_SUPER_USERS", "User:admin"),
    ("KAFKA_LISTENER_NAME_CLIENT_SASL_ENABLED_MECHANISMS", "SCRAM-SHA-512"),
    ("KAFKA_ADVERTISED_LISTENERS", "CLIENT://kafka:9092,INTERNAL://kafka:9094"),
    ("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "CLIENT:SASL_PLAINTEXT,INTERNAL:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT"),
    ("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false"),
]


@pytest.mark.parametrize("setting, value", BROKER_SETTINGS, ids=[row[0] for row in BROKER_SETTINGS])
def test_compose_runs_kafka_with_scram_and_the_authorizer(setting, value):
    kafka = compose()["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert kafka["environment"][setting] == value


def test_compose_applies_the_generated_users_and_acls_before_the_services_start():
    services = compose()
    acls = services["acls"]
    assert "./acls:/etc/fengqiao/acls:ro" in acls["volumes"]
    assert "sh /etc/fengqiao/acls/scram-users.sh && sh /etc/fengqiao/acls/kafka-acls.sh" in acls["command"][0]
    for name in ("triage", "dispatch", "followup"):
        service = services[name]
        assert service["depends_on"]["acls"] == {"condition": "service_completed_successfully"}
        env = service["environment"]
        assert (env["KAFKA_SECURITY_PROTOCOL"], env["KAFKA_SASL_MECHANISM"], env["KAFKA_SASL_USERNAME"]) == ("SASL_PLAINTEXT", "SCRAM-SHA-512", name)
        variable = password_variable(name)
        assert env["KAFKA_SASL_PASSWORD"] == f"${{{variable}}}" and variable in acls["environment"]


# (principal, how compose passes its password to the acls job): services and the exporter must be set, a department
# may be left unset until onboarded (scram-users.sh skips it), but its variable must reach the container either way.
PASSWORD_ROWS = [(p, "required" if not p.startswith("dept-") else "optional") for p in GRANTS]


@pytest.mark.parametrize("principal, need", PASSWORD_ROWS, ids=[row[0] for row in PASSWORD_ROWS])
def test_compose_passes_every_principals_password_variable_to_the_acls_job(principal, need):
    environment = compose()["acls"]["environment"]
    variable = password_variable(principal)
    assert variable in environment, f"{variable} never reaches the acls job: run `fengqiao acls generate`"
    expected = f"${{{variable}:?set {variable}}}" if need == "required" else f"${{{variable}:-}}"
    assert environment[variable] == expected


def test_the_acls_jobs_passwords_are_the_catalogues_principals_and_nothing_else():
    passed = {name for name in compose()["acls"]["environment"] if name.startswith("SCRAM_PASSWORD_")}
    assert passed == {password_variable(p) for p in GRANTS} >= {password_variable(department_principal(d)) for d in DEPARTMENTS}


def test_generating_refuses_a_compose_file_that_lost_its_generated_block():
    with pytest.raises(ValueError, match="lost its generated block"):
        compose_file(GRANTS, COMPOSE.read_text(encoding="utf-8").replace(COMPOSE_END, ""))


def test_compose_runs_the_lag_exporter_as_its_own_read_only_user_not_the_admin():
    services = compose()
    exporter, acls = services["kafka-exporter"], services["acls"]
    flags = dict(flag.removeprefix("--").split("=", 1) for flag in exporter["command"] if "=" in flag)
    assert flags["kafka.server"] == "kafka:9092"  # the SCRAM client listener, whose clients the authorizer checks
    assert (flags["sasl.mechanism"], flags["sasl.username"]) == ("scram-sha512", EXPORTER)
    variable = password_variable(EXPORTER)
    assert flags["sasl.password"] == f"${{{variable}}}" and variable in acls["environment"]
    assert "admin" not in " ".join(exporter["command"]) and "KAFKA_ADMIN_PASSWORD" not in " ".join(exporter["command"])
    assert exporter["depends_on"]["acls"] == {"condition": "service_completed_successfully"}


@pytest.mark.parametrize("service", ["triage", "dispatch", "followup"])
def test_each_kubernetes_deployment_connects_as_its_own_kafka_user(service):
    deployment = next(d for d in yaml.safe_load_all((STRIMZI_PATH.parent / f"{service}.yaml").read_text(encoding="utf-8")) if d["kind"] == "Deployment")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["KAFKA_SASL_USERNAME"]["value"] == service and service in GRANTS
    assert env["KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": service, "key": "password"}
