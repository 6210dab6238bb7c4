"""A service's interpreter settings: the collector's thresholds, and how soon the store's thread gets the GIL back."""

import gc
import sys

from services.runtime.service import SWITCH_INTERVAL_SECONDS, tune_interpreter


def test_tuning_sets_the_collector_and_a_switch_interval_shorter_than_pythons():
    threshold, interval = gc.get_threshold(), sys.getswitchinterval()
    try:
        tune_interpreter()
        assert gc.get_threshold() == (50_000, 20, 100)
        assert sys.getswitchinterval() == SWITCH_INTERVAL_SECONDS < 0.005  # Python's default
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
        sys.setswitchinterval(interval)
