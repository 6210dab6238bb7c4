"""Topic layout for a cluster: which topics exist and with how many partitions; shared by tests, `make run` and deploy."""

import logging
from dataclasses import dataclass

import yaml
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import for_code
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import Array, Boolean, Int8, Int16, Int32, Schema, String

from schemas.disputes import DISPUTES_INVALID, DISPUTES_REASSESS, DISPUTES_REPORTED, DISPUTES_TRIAGED
from schemas.rules import RULES_TRIAGE
from schemas.catalog import DEVELOPMENT_TOPICS, Environment
from schemas.followups import FOLLOWUPS_DUE, FOLLOWUPS_RESULTS, FOLLOWUPS_RESULTS_INVALID, due_topic, results_topic
from schemas.workorders import (
    DEPARTMENTS,
    WORKORDERS_EVENTS,
    WORKORDERS_EVENTS_INVALID,
    WORKORDERS_UPDATES,
    WORKORDERS_UPDATES_INVALID,
    updates_topic,
    work_order_topic,
)
from services.runtime.kafka import client_options
from services.runtime.settings import KafkaSettings

log = logging.getLogger(__name__)

# Dead letters hold whole refused records, reports with their parties among them: kept a week, long enough to
# look at and replay a refusal, not as long as the stores keep personal data (DISPATCH_RETENTION_DAYS and the like).
DEAD_LETTER_RETENTION_MS = 7 * 24 * 3600 * 1000

# A production cluster's layout, used by `fengqiao topics create` and the generated Strimzi KafkaTopic resources alike.
PRODUCTION_PARTITIONS = 6
PRODUCTION_REPLICAS = 3


@dataclass(frozen=True)
class TopicSpec:
    """How one topic is created on a cluster."""

    name: str
    partitions: int
    config: tuple[tuple[str, str], ...] = ()


def contract_topics(partitions: int = 4, environment: Environment = "development") -> list[TopicSpec]:
    """List every contract topic of an environment; dead letters keep one partition and a week of retention."""
    flowing = [
        DISPUTES_REPORTED,
        DISPUTES_REASSESS,
        DISPUTES_TRIAGED,
        WORKORDERS_UPDATES,
        WORKORDERS_EVENTS,
        FOLLOWUPS_DUE,
        FOLLOWUPS_RESULTS,
        *(work_order_topic(d) for d in DEPARTMENTS),
        # Each department writes only its own: one ACL per principal (the shared two above serve development).
        *(updates_topic(d) for d in DEPARTMENTS),
        *(results_topic(d) for d in DEPARTMENTS),
        # Each department reads only its own dues; followups.due above is the operators' feed, without parties.
        *(due_topic(d) for d in DEPARTMENTS),
    ]
    if environment == "production":
        # No service reads the shared development topics there and no principal may write them: not created at all.
        flowing = [t for t in flowing if t not in DEVELOPMENT_TOPICS.values()]
    dead = [DISPUTES_INVALID, WORKORDERS_UPDATES_INVALID, WORKORDERS_EVENTS_INVALID, FOLLOWUPS_RESULTS_INVALID]
    retention = (("retention.ms", str(DEAD_LETTER_RETENTION_MS)),)
    # Every instance reads the whole rules topic; compaction keeps the latest version per key.
    compacted = (("cleanup.policy", "compact"),)
    return (
        [TopicSpec(t, partitions) for t in flowing]
        + [TopicSpec(t, 1, retention) for t in dead]
        + [TopicSpec(RULES_TRIAGE, 1, compacted)]
    )


class _IncrementalAlterConfigsResponse(Response):
    API_KEY = 44
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("responses", Array(("error_code", Int16), ("error_message", String("utf-8")), ("resource_type", Int8), ("resource_name", String("utf-8")))),
    )


class _IncrementalAlterConfigsStruct(RequestStruct):
    API_KEY = 44
    API_VERSION = 0
    RESPONSE_TYPE = _IncrementalAlterConfigsResponse
    SCHEMA = Schema(
        (
            "resources",
            Array(
                ("resource_type", Int8),
                ("resource_name", String("utf-8")),
                ("configs", Array(("name", String("utf-8")), ("config_operation", Int8), ("value", String("utf-8")))),
            ),
        ),
        ("validate_only", Boolean),
    )


class IncrementalAlterConfigs(Request[_IncrementalAlterConfigsStruct]):
    """Set some configs of some topics, leaving their other configs as they are (the admin client has no such request).

    Tansu answers IncrementalAlterConfigs and not the older AlterConfigs, which would also reset every config not named.
    """

    API_KEY = 44
    _SET = 0

    def __init__(self, configs: dict[str, dict[str, str]]):
        self._resources = [
            (ConfigResourceType.TOPIC, topic, [(name, self._SET, value) for name, value in sorted(values.items())])
            for topic, values in configs.items()
        ]

    def build(self, request_struct_class: type[_IncrementalAlterConfigsStruct]) -> _IncrementalAlterConfigsStruct:
        """Build the request for the version the broker answers."""
        return request_struct_class(self._resources, False)


async def _drifted_configs(admin: AIOKafkaAdminClient, wanted: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """Return, per topic, the wanted configs the cluster holds another value for."""
    if not wanted:
        return {}
    # Every config of each topic, not only the wanted names: Tansu closes the connection on a DescribeConfigs that names some.
    [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t) for t in wanted])
    held = {r[3]: {entry[0]: entry[1] for entry in r[4]} for r in response.resources}
    drifted = {t: {k: v for k, v in c.items() if held.get(t, {}).get(k) != v} for t, c in wanted.items()}
    return {t: c for t, c in drifted.items() if c}


async def ensure_topics(
    settings: KafkaSettings, bootstrap_servers: str, specs: list[TopicSpec], replication_factor: int = 1
) -> list[str]:
    """Create the topics that do not exist yet (with the settings' prefix), set their configs on those that do; return the names created."""
    admin = AIOKafkaAdminClient(**client_options(settings, bootstrap_servers))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [s for s in specs if settings.topic(s.name) not in existing]
        if missing:
            await admin.create_topics(
                [
                    NewTopic(settings.topic(s.name), s.partitions, replication_factor, topic_configs=dict(s.config))
                    for s in missing
                ]
            )
        created = [settings.topic(s.name) for s in missing]
        log.info("created %d topics", len(created))
        # A topic made before its config was (a dead letter kept forever) gets it now: the layout is the truth.
        wanted = {settings.topic(s.name): dict(s.config) for s in specs if s.config and settings.topic(s.name) in existing}
        drifted = await _drifted_configs(admin, wanted)
        if drifted:
            response = await admin._send_request(IncrementalAlterConfigs(drifted))
            for error_code, message, _, topic in response.responses:
                if error_code:
                    raise for_code(error_code)(f"cannot set {drifted[topic]} on {topic}: {message}")
            log.info("set configs on %d existing topics: %s", len(drifted), drifted)
        return created
    finally:
        await admin.close()


def kubernetes_name(topic: str) -> str:
    """Name a topic's KafkaTopic resource: the topic name with '_' as '-', which Kubernetes names may not hold."""
    return topic.replace("_", "-")


def strimzi_topics(cluster: str) -> str:
    """Render the production topic layout as Strimzi KafkaTopic resources, configs (dead letters' retention) included."""
    documents = [
        {
            "apiVersion": "kafka.strimzi.io/v1beta2",
            "kind": "KafkaTopic",
            "metadata": {"name": kubernetes_name(spec.name), "labels": {"strimzi.io/cluster": cluster, "app.kubernetes.io/part-of": "fengqiao"}},
            # topicName: the resource's name cannot carry the underscores of the department topics.
            "spec": {"topicName": spec.name, "partitions": spec.partitions, "replicas": PRODUCTION_REPLICAS}
            | ({"config": dict(spec.config)} if spec.config else {}),
        }
        for spec in contract_topics(PRODUCTION_PARTITIONS, environment="production")
    ]
    head = "# Generated by `fengqiao acls generate` from services/runtime/topics.py: do not edit, regenerate.\n"
    head += "# The production topics, as `fengqiao topics create` makes them; the Topic Operator also applies a changed config\n"
    head += "# (e.g. the dead letters' retention.ms) to a topic that exists. kubectl apply -f deploy/k8s/kafka-topics.yaml\n"
    return head + yaml.safe_dump_all(documents, sort_keys=False, allow_unicode=True, width=200)
