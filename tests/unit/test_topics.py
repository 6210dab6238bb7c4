"""The topic layout of each environment: per-department topics everywhere, the shared development topics outside production."""

import re

import pytest
import yaml

from schemas.catalog import DEAD_LETTERS
from schemas.followups import FOLLOWUPS_DUE, FOLLOWUPS_RESULTS, due_topic, results_topic
from schemas.workorders import DEPARTMENTS, WORKORDERS_UPDATES, updates_topic
from services.runtime.acls import TOPICS_PATH
from services.runtime.topics import DEAD_LETTER_RETENTION_MS, PRODUCTION_PARTITIONS, PRODUCTION_REPLICAS, contract_topics

PER_DEPARTMENT = {t for d in DEPARTMENTS for t in (updates_topic(d), results_topic(d), due_topic(d))}

# (environment, the shared development topics it has): production has none, so no one can write them by mistake.
LAYOUTS = [("development", {WORKORDERS_UPDATES, FOLLOWUPS_RESULTS}), ("production", set())]


@pytest.mark.parametrize(("environment", "shared"), LAYOUTS, ids=[row[0] for row in LAYOUTS])
def test_each_environment_creates_the_department_topics_and_the_due_feed_and_only_development_the_shared_inputs(environment, shared):
    names = [spec.name for spec in contract_topics(environment=environment)]
    assert len(names) == len(set(names))
    assert PER_DEPARTMENT | {FOLLOWUPS_DUE} <= set(names)
    assert set(names) & {WORKORDERS_UPDATES, FOLLOWUPS_RESULTS} == shared
    assert set(names) - shared == {spec.name for spec in contract_topics(environment="production")}


@pytest.mark.parametrize("department", ["", "nobody", "followups"])
def test_an_unknown_department_has_no_due_topic(department):
    with pytest.raises(ValueError, match="unknown department"):
        due_topic(department)


def kafka_topics() -> dict[str, dict]:
    """Read deploy/k8s/kafka-topics.yaml back, checking each document is a Strimzi KafkaTopic with a Kubernetes name."""
    found = {}
    for resource in yaml.safe_load_all(TOPICS_PATH.read_text(encoding="utf-8")):
        assert (resource["apiVersion"], resource["kind"]) == ("kafka.strimzi.io/v1beta2", "KafkaTopic")
        assert re.fullmatch(r"[a-z0-9]([-.a-z0-9]*[a-z0-9])?", resource["metadata"]["name"]), "a Kubernetes name"
        assert resource["metadata"]["labels"]["strimzi.io/cluster"] == "fengqiao"
        found[resource["spec"]["topicName"]] = resource["spec"]
    return found


def test_the_kafka_topic_resources_are_the_production_layout_topics_create_makes():
    specs = {spec.name: spec for spec in contract_topics(PRODUCTION_PARTITIONS, environment="production")}
    resources = kafka_topics()
    assert set(resources) == set(specs)
    for name, spec in specs.items():
        assert (resources[name]["partitions"], resources[name]["replicas"]) == (spec.partitions, PRODUCTION_REPLICAS)
        assert resources[name].get("config", {}) == dict(spec.config)


DEAD = sorted(set(DEAD_LETTERS.values()))


@pytest.mark.parametrize("topic", DEAD)
def test_every_dead_letter_topic_keeps_its_records_a_week_in_every_deployment(topic):
    week = str(7 * 24 * 3600 * 1000)
    assert str(DEAD_LETTER_RETENTION_MS) == week
    assert kafka_topics()[topic]["config"]["retention.ms"] == week
    assert dict(next(s for s in contract_topics(environment="development") if s.name == topic).config)["retention.ms"] == week


def test_no_flowing_topic_gets_the_dead_letters_short_retention():
    short = [name for name, spec in kafka_topics().items() if "retention.ms" in spec.get("config", {})]
    assert sorted(short) == DEAD
