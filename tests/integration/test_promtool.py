"""promtool accepts the Prometheus configuration and alert rules as deployed."""

import shutil
import subprocess
from pathlib import Path

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
