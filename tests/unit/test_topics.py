"""The topic layout of each environment: per-department topics everywhere, the shared development topics outside production."""

import pytest

from schemas.followups import FOLLOWUPS_DUE, FOLLOWUPS_RESULTS, due_topic, results_topic
from schemas.workorders import DEPARTMENTS, WORKORDERS_UPDATES, updates_topic
from services.runtime.topics import contract_topics

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
