"""A service's app as built, connected to nothing: the topics it reads against those the catalog says it consumes."""

from schemas.catalog import DEVELOPMENT_TOPICS, SERVICES, expand
from services.runtime.settings import KafkaSettings


def subscribed(broker) -> set[str]:
    """Return the name of every topic the broker's subscribers read."""
    return {getattr(t, "name", t) for sub in broker.subscribers for t in sub.topics}


def documented(service: str, kafka: KafkaSettings) -> set[str]:
    """Return the topics the catalog says the service consumes, under the prefix, with development's shared ones."""
    consumes = SERVICES[service].consumes
    own = {kafka.topic(t) for c in consumes for t in expand(c.topic)}
    return own | {kafka.topic(DEVELOPMENT_TOPICS[c.topic]) for c in consumes if c.topic in DEVELOPMENT_TOPICS}


def per_department(service: str) -> set[str]:
    """Return the service's per-department input topics: those that development also offers on a shared topic."""
    return {t for c in SERVICES[service].consumes if c.topic in DEVELOPMENT_TOPICS for t in expand(c.topic)}
