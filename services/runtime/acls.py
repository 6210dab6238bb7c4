"""Kafka ACLs as data: every principal's grants, derived from the topic catalogue, rendered for kafka-acls.sh and Strimzi.

One principal per service and one per department. A service may read what it consumes and write what it produces
and its inputs' dead letters; a department may read its own orders topic and write only its own updates and
results topics, so the topic a record came on names who sent it (services check the payload against it).
Each department also reads its own due topic (followups.<department>.due); the shared followups.due (every
department's dues, without parties) is read by the operators alone, who are super users and need no grant.
A metrics exporter may describe every topic and group (offsets and lag) and read none.
The shared development topics (workorders.updates, followups.results) get no grant at all.
Run `fengqiao acls generate` after changing the catalogue; a test fails while the committed files differ.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

from schemas.catalog import DEAD_LETTERS, DEPARTMENT, DEPARTMENT_PLACEHOLDER, EXTRA_READS, SERVICES, expand
from schemas.workorders import DEPARTMENTS

DEPLOY_DIR = Path(__file__).parents[2] / "deploy"
SCRIPT_PATH = DEPLOY_DIR / "acls" / "kafka-acls.sh"
USERS_SCRIPT_PATH = DEPLOY_DIR / "acls" / "scram-users.sh"
STRIMZI_PATH = DEPLOY_DIR / "k8s" / "kafka-users.yaml"
# The Strimzi Kafka cluster the users belong to (its `strimzi.io/cluster` label).
STRIMZI_CLUSTER = "fengqiao"

Operation = Literal["Read", "Write", "Describe"]
ResourceType = Literal["topic", "group"]

# The Kafka lag exporter (deploy/compose.yaml's kafka-exporter): a principal of its own instead of the admin.
EXPORTER = "exporter"

# Groups each service's app.py subscribes with, as suffixes of its settings' group_id ("" is the group_id itself).
# A test checks these against the apps' subscribers: a new subscriber needs its group here.
GROUP_SUFFIXES: dict[str, tuple[str, ...]] = {"triage": ("",), "dispatch": (".triaged", ".updates"), "followup": (".events", ".results")}


@dataclass(frozen=True, order=True)
class Grant:
    """One allowed operation of one principal on one literal resource."""

    principal: str
    resource_type: ResourceType
    resource: str
    operation: Operation


def department_principal(department: str) -> str:
    """Name a department's principal: a Kafka user name that is also a valid Kubernetes name (no underscores)."""
    return f"dept-{department.replace('_', '-')}"


def department_group(department: str) -> str:
    """Name the consumer group a department's system reads its orders with: its principal's name."""
    return department_principal(department)


def service_groups() -> dict[str, list[str]]:
    """Return the consumer groups of each service, from its settings' default group_id and its subscribers' suffixes."""
    # Imported here: the services' settings are not the catalogue's concern, and only the generator needs them.
    from services.dispatch.settings import DispatchSettings
    from services.followup.settings import FollowupSettings
    from services.triage.settings import TriageSettings

    settings = {"triage": TriageSettings, "dispatch": DispatchSettings, "followup": FollowupSettings}
    return {name: [settings[name].model_fields["group_id"].default + s for s in suffixes] for name, suffixes in GROUP_SUFFIXES.items()}


def _topic_grants(principal: str, topics: Iterable[str], operation: Operation) -> list[Grant]:
    # Describe is implied by Read and Write in Kafka; granted explicitly so each listing says all a client may do.
    return [Grant(principal, "topic", t, op) for t in topics for op in (operation, "Describe")]


def service_grants(name: str, groups: list[str]) -> list[Grant]:
    """List a service principal's grants: read its inputs, write its outputs and its inputs' dead letters, read its groups."""
    topology = SERVICES[name]
    reads = [t for c in topology.consumes for t in expand(c.topic)] + list(EXTRA_READS.get(name, ()))
    writes = [t for c in topology.produces for t in expand(c.topic)] + [DEAD_LETTERS[c.topic] for c in topology.consumes]
    grants = _topic_grants(name, reads, "Read") + _topic_grants(name, writes, "Write")
    return grants + [Grant(name, "group", g, "Read") for g in groups]


def department_grants(department: str) -> list[Grant]:
    """List a department principal's grants: read its own orders, write its own updates and results, read its group."""
    principal = department_principal(department)

    def own(topic: str) -> str:
        # Only the department's own instance of a per-department topic: never another department's.
        return topic.replace(DEPARTMENT_PLACEHOLDER, department)

    grants = _topic_grants(principal, [own(c.topic) for c in DEPARTMENT.consumes], "Read")
    grants += _topic_grants(principal, [own(c.topic) for c in DEPARTMENT.produces], "Write")
    return grants + [Grant(principal, "group", department_group(department), "Read")]


def exporter_grants(groups: list[str]) -> list[Grant]:
    """List the lag exporter's grants: Describe on every production topic and every group, and no Read or Write."""
    # Imported here: topics.py needs the Kafka client, the catalogue does not.
    from services.runtime.topics import contract_topics

    # Metadata and ListOffsets need Describe on the topic; DescribeGroups, OffsetFetch and ListGroups (which lists
    # only the groups one may describe, so no cluster grant) need Describe on the group. Describe shows no record.
    topics = [spec.name for spec in contract_topics(environment="production")]
    return [Grant(EXPORTER, "topic", t, "Describe") for t in topics] + [Grant(EXPORTER, "group", g, "Describe") for g in groups]


def all_grants() -> dict[str, list[Grant]]:
    """Return every principal's grants, services first, then departments and the exporter, each sorted and free of repeats."""
    groups = service_groups()
    by_principal = {name: service_grants(name, groups[name]) for name in SERVICES}
    by_principal |= {department_principal(d): department_grants(d) for d in DEPARTMENTS}
    every_group = [g for name in SERVICES for g in groups[name]] + [department_group(d) for d in DEPARTMENTS]
    by_principal[EXPORTER] = exporter_grants(every_group)
    return {p: sorted(set(grants)) for p, grants in by_principal.items()}


def _resources(grants: list[Grant]) -> dict[tuple[str, str], list[str]]:
    """Group grants by resource, operations in a fixed order, resources in order of first sight."""
    order = {"Read": 0, "Write": 1, "Describe": 2}
    found: dict[tuple[str, str], list[str]] = {}
    for grant in grants:
        found.setdefault((grant.resource_type, grant.resource), []).append(grant.operation)
    return {key: sorted(ops, key=order.__getitem__) for key, ops in found.items()}


_SCRIPT_HEAD = """#!/bin/sh
# Generated by `fengqiao acls generate` from schemas/catalog.py: do not edit, regenerate.
# Adds the ACLs of every Fengqiao principal. Run as a super user, e.g.
#   KAFKA_BOOTSTRAP_SERVERS=kafka:9094 KAFKA_ADMIN_CONFIG=/tmp/admin.properties sh deploy/acls/kafka-acls.sh
# Adding an ACL twice is harmless, so the script can run on every start.
set -eu
: "${KAFKA_BOOTSTRAP_SERVERS:?set KAFKA_BOOTSTRAP_SERVERS}"
: "${KAFKA_ADMIN_CONFIG:?set KAFKA_ADMIN_CONFIG to the admin client properties}"
KAFKA_ACLS="${KAFKA_ACLS:-/opt/kafka/bin/kafka-acls.sh}"
"""


def acl_script(grants: dict[str, list[Grant]]) -> str:
    """Render the grants as kafka-acls.sh commands, one per principal and resource."""
    lines = [_SCRIPT_HEAD]
    for principal, own in grants.items():
        lines.append(f"\n# {principal}\n")
        for (kind, name), operations in _resources(own).items():
            ops = " ".join(f"--operation {op}" for op in operations)
            lines.append(
                f'"$KAFKA_ACLS" --bootstrap-server "$KAFKA_BOOTSTRAP_SERVERS" --command-config "$KAFKA_ADMIN_CONFIG" --add '
                f"--allow-principal User:{principal} {ops} --{kind} {name} --resource-pattern-type literal\n"
            )
    return "".join(lines)


_USERS_HEAD = """#!/bin/sh
# Generated by `fengqiao acls generate` from schemas/catalog.py: do not edit, regenerate.
# Creates the SCRAM-SHA-512 credentials of every principal whose password variable is set (the variable's name
# is the principal's, upper case, '-' as '_', prefixed SCRAM_PASSWORD_); departments not yet onboarded are skipped.
set -eu
: "${KAFKA_BOOTSTRAP_SERVERS:?set KAFKA_BOOTSTRAP_SERVERS}"
: "${KAFKA_ADMIN_CONFIG:?set KAFKA_ADMIN_CONFIG to the admin client properties}"
KAFKA_CONFIGS="${KAFKA_CONFIGS:-/opt/kafka/bin/kafka-configs.sh}"

scram_user() {
  if [ -z "$2" ]; then echo "no password for $1: skipped"; return; fi
  "$KAFKA_CONFIGS" --bootstrap-server "$KAFKA_BOOTSTRAP_SERVERS" --command-config "$KAFKA_ADMIN_CONFIG" --alter \\
    --entity-type users --entity-name "$1" --add-config "SCRAM-SHA-512=[iterations=8192,password=$2]"
}
"""


def password_variable(principal: str) -> str:
    """Name the environment variable holding a principal's SCRAM password for scram-users.sh."""
    return "SCRAM_PASSWORD_" + principal.upper().replace("-", "_")


def users_script(grants: dict[str, list[Grant]]) -> str:
    """Render the SCRAM credential creation of every principal."""
    return _USERS_HEAD + "\n" + "".join(f'scram_user {p} "${{{password_variable(p)}:-}}"\n' for p in grants)


def strimzi_users(grants: dict[str, list[Grant]]) -> str:
    """Render the grants as Strimzi KafkaUser resources with SCRAM-SHA-512 authentication and simple authorization."""
    documents = []
    for principal, own in grants.items():
        acls = [
            {"resource": {"type": kind, "name": name, "patternType": "literal"}, "operations": operations, "host": "*"}
            for (kind, name), operations in _resources(own).items()
        ]
        documents.append({
            "apiVersion": "kafka.strimzi.io/v1beta2",
            "kind": "KafkaUser",
            "metadata": {"name": principal, "labels": {"strimzi.io/cluster": STRIMZI_CLUSTER, "app.kubernetes.io/part-of": "fengqiao"}},
            "spec": {"authentication": {"type": "scram-sha-512"}, "authorization": {"type": "simple", "acls": acls}},
        })
    head = "# Generated by `fengqiao acls generate` from schemas/catalog.py: do not edit, regenerate.\n"
    head += "# One KafkaUser per service, per department and for the lag exporter; Strimzi keeps each password in a Secret of the user's name.\n"
    return head + yaml.safe_dump_all(documents, sort_keys=False, allow_unicode=True, width=200)


def documents() -> dict[Path, str]:
    """Render every generated ACL file, keyed by its path."""
    grants = all_grants()
    return {SCRIPT_PATH: acl_script(grants), USERS_SCRIPT_PATH: users_script(grants), STRIMZI_PATH: strimzi_users(grants)}


def drift() -> list[str]:
    """List the committed ACL files that differ from the catalogue."""
    return [f"{path.relative_to(DEPLOY_DIR.parent)}: differs" for path, text in documents().items() if not path.exists() or path.read_text(encoding="utf-8") != text]


def write() -> list[Path]:
    """Write every generated ACL file; return their paths."""
    written = []
    for path, text in documents().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
