"""The rules tooling: check, explain and backtest, as an operator runs them before promoting a version."""

import json

from typer.testing import CliRunner

from services.cli import app
from services.triage.ruleset import DEFAULT_RULES
from tests.support.samples import report_payload

runner = CliRunner()


def test_check_accepts_the_default_rules():
    result = runner.invoke(app, ["rules", "check", str(DEFAULT_RULES)])
    assert result.exit_code == 0
    assert "ruleset 2026.11.1 is valid (18 rules)" in result.output


def test_check_names_the_rule_and_key_of_a_broken_file(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text(DEFAULT_RULES.read_text(encoding="utf-8").replace("party_count: {\">=\": 10}", "party_count: {\"~\": 10}"), encoding="utf-8")
    result = runner.invoke(app, ["rules", "check", str(broken)])
    assert result.exit_code == 1
    assert "rule 'L3-mass' (rules[3]): when.any[0].party_count: unknown operator '~'" in result.output


def test_explain_prints_the_grade_as_json(tmp_path):
    report = tmp_path / "report.json"
    report.write_text(json.dumps(report_payload(description="他扬言要拿刀报复", party_count=4)), encoding="utf-8")
    result = runner.invoke(app, ["rules", "explain", str(DEFAULT_RULES), str(report)])
    assert result.exit_code == 0, result.output
    explained = json.loads(result.output)
    assert (explained["level"], explained["tier"], explained["urgency"]) == (3, "joint_consultation", "immediate")
    assert [r["id"] for r in explained["matched_rules"]] == ["L3-violence", "L2-parties", "U-immediate"]
    assert "detected:violence_threat" in explained["flags"]


def test_explain_rejects_an_invalid_report_naming_the_field(tmp_path):
    report = tmp_path / "report.json"
    report.write_text(json.dumps(report_payload(category="gambling")), encoding="utf-8")
    result = runner.invoke(app, ["rules", "explain", str(DEFAULT_RULES), str(report)])
    assert result.exit_code == 1 and "category: Input should be" in result.output


def test_backtest_shows_level_changes_and_the_changed_cases(tmp_path):
    candidate = tmp_path / "candidate.yaml"
    candidate.write_text(
        DEFAULT_RULES.read_text(encoding="utf-8")
        .replace('version: "2026.11.1"', 'version: "2026.12.1"')
        .replace('party_count: {">=": 3}', 'party_count: {">=": 2}'),
        encoding="utf-8",
    )
    cases = tmp_path / "cases.jsonl"
    lines = [json.dumps(report_payload(event_id=f"e{n}", party_count=n)) for n in (1, 2, 2, 5, 12)]
    cases.write_text("\n".join(lines + ["{broken"]) + "\n", encoding="utf-8")
    result = runner.invoke(app, ["rules", "backtest", str(candidate), "--against", str(DEFAULT_RULES), "--cases", str(cases)])
    assert result.exit_code == 0, result.output
    assert "backtest: 5 reports, 2026.11.1 -> 2026.12.1, 2 changed, 1 invalid skipped" in result.output
    rows = {line.split("|")[0].strip(): [int(c) for c in line.split("|")[1:]] for line in result.output.splitlines() if line.strip()[:1] in "123" and "|" in line}
    assert rows == {"1": [1, 2, 0], "2": [0, 1, 0], "3": [0, 0, 1]}
    changed = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert [c["event_id"] for c in changed] == ["e2", "e2"]
    assert changed[0]["before"]["level"] == 1 and changed[0]["after"]["level"] == 2
