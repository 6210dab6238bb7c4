"""The FENGQIAO_FAULT format: a point, optionally the reach that kills."""

import pytest

from services.runtime.faults import _parse


def test_unset_names_no_point():
    assert _parse("") == (None, 0)


def test_a_point_alone_kills_at_its_first_reach_and_a_count_at_that_reach():
    assert _parse("after_publish") == ("after_publish", 1)
    assert _parse("events.after_record:3") == ("events.after_record", 3)


@pytest.mark.parametrize("value", [":3", "after_publish:", "after_publish:0", "after_publish:x", "after_publish:-1"])
def test_a_malformed_value_is_refused(value):
    with pytest.raises(ValueError, match="FENGQIAO_FAULT"):
        _parse(value)
