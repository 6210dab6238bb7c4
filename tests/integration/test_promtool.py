"""promtool accepts the Prometheus configuration and alert rules as deployed."""

import shutil
import subprocess
from pathlib import Path

import yaml

DEPLOY = Path(__file__).parents[2] / "deploy"

PROMTOOL = shutil.which("promtool")


def test_promtool_accepts_the_config_and_rules(tmp_path):
    assert PROMTOOL, "promtool is missing: `make test` installs Debian's prometheus package"
    rules = subprocess.run([PROMTOOL, "check", "rules", str(DEPLOY / "prometheus" / "alerts.yml")], capture_output=True, text=True)
    assert rules.returncode == 0, rules.stdout + rules.stderr
    config = tmp_path / "prometheus.yml"
    shutil.copy(DEPLOY / "prometheus" / "alerts.yml", tmp_path / "alerts.yml")
    config.write_text((DEPLOY / "prometheus" / "prometheus.yml").read_text().replace("/etc/prometheus/alerts.yml", str(tmp_path / "alerts.yml")))
    checked = subprocess.run([PROMTOOL, "check", "config", str(config)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


# (covered days each dispatch replica exports, whether CalendarCoverageLow fires): a replica still on last year's file
# must raise it even while another has the new year.
COVERAGE = [
    ((396, 396), False),
    ((396, 30), True),
    ((30,), True),
    ((60, 61), False),
]


def test_calendar_coverage_alert_fires_when_any_replica_knows_under_60_days(tmp_path):
    assert PROMTOOL, "promtool is missing: `make test` installs Debian's prometheus package"
    shutil.copy(DEPLOY / "prometheus" / "alerts.yml", tmp_path / "alerts.yml")
    for days, fires in COVERAGE:
        series = [{"series": f'fengqiao_dispatch_calendar_covered_days{{instance="r{i}"}}', "values": f"{d}x120"} for i, d in enumerate(days)]
        expected = [{"exp_labels": {"severity": "warning"}, "exp_annotations": {"summary": _coverage_summary(min(days))}}] if fires else []
        tests = {"interval": "1m", "input_series": series, "alert_rule_test": [{"eval_time": "90m", "alertname": "CalendarCoverageLow", "exp_alerts": expected}]}
        (tmp_path / "coverage_test.yml").write_text(yaml.safe_dump({"rule_files": ["alerts.yml"], "tests": [tests]}, allow_unicode=True))
        ran = subprocess.run([PROMTOOL, "test", "rules", str(tmp_path / "coverage_test.yml")], capture_output=True, text=True)
        assert ran.returncode == 0, (days, ran.stdout + ran.stderr)


def _coverage_summary(days: int) -> str:
    """Return the alert's summary as Prometheus renders it for a coverage of `days`."""
    rule = next(r for g in yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"] for r in g["rules"] if r.get("alert") == "CalendarCoverageLow")
    return rule["annotations"]["summary"].replace("{{ $value }}", str(days))
