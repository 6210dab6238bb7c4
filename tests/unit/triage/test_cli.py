"""The rules tooling: check, explain, backtest, keygen, sign and verify, as an operator runs them before promoting a version."""

import json

import pytest

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


def candidate_rules(tmp_path, change: tuple[str, str]):
    """Write the default rules as version 2026.12.1 with one text replaced, and return the file."""
    candidate = tmp_path / "candidate.yaml"
    text = DEFAULT_RULES.read_text(encoding="utf-8").replace('version: "2026.11.1"', 'version: "2026.12.1"')
    assert change[0] in text, change[0]
    candidate.write_text(text.replace(*change), encoding="utf-8")
    return candidate


def test_backtest_shows_level_changes_and_the_changed_cases(tmp_path):
    candidate = candidate_rules(tmp_path, ('party_count: {">=": 3}', 'party_count: {">=": 2}'))
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


def wage_case(n: int, employer: str, day: int) -> str:
    return json.dumps(report_payload(
        event_id=f"w{n}", dispute_id=f"D-W{n}", category="labor_wage", reported_at=f"2026-03-{day:02d}T09:00:00+08:00",
        parties=[{"role": "complainant", "kind": "person", "name": "工人", "phone": f"1390000{n:04d}"},
                 {"role": "respondent", "kind": "organization", "name": employer}],
    ), ensure_ascii=False)


def test_backtest_replays_correlation_in_report_order_with_each_versions_windows(tmp_path):
    # Three wage disputes against one employer over nine days: group wage risk within 10 days, not within 7.
    candidate = candidate_rules(tmp_path, ("window_days: 7", "window_days: 10"))
    cases = tmp_path / "cases.jsonl"
    # Written out of order, and under two spellings of the same employer: replay sorts by report time.
    lines = [wage_case(3, "宏达建筑有限公司", 10), wage_case(1, "宏达建筑公司", 1), wage_case(2, "宏达建筑 公司", 5)]
    cases.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = runner.invoke(app, ["rules", "backtest", str(candidate), "--against", str(DEFAULT_RULES), "--cases", str(cases)])
    assert result.exit_code == 0, result.output
    assert "backtest: 3 reports, 2026.11.1 -> 2026.12.1, 1 changed, 0 invalid skipped" in result.output
    assert "repeat_parties 0 -> 0, group_wage_risk 0 -> 1" in result.output
    [changed] = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert changed["event_id"] == "w3" and changed["line"] == 1
    assert (changed["before"]["level"], changed["after"]["level"]) == (1, 3)
    assert "group_wage_risk" in changed["after"]["flags"] and "L3-group-wage" in [r["id"] for r in changed["after"]["matched_rules"]]


def test_backtest_finds_repeat_parties_across_disputes(tmp_path):
    cases = tmp_path / "cases.jsonl"
    # The same people about another matter (the same matter would be one case reported twice, no repeat).
    lines = [json.dumps(report_payload(event_id=f"e{n}", dispute_id=f"D-{n}", reported_at=f"2026-03-0{n}T09:00:00+08:00", category=c))
             for n, c in ((1, "contract_debt"), (2, "family_marriage"))]
    cases.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = runner.invoke(app, ["rules", "backtest", str(DEFAULT_RULES), "--against", str(DEFAULT_RULES), "--cases", str(cases)])
    assert result.exit_code == 0, result.output
    assert "repeat_parties 1 -> 1" in result.output
    rows = {line.split("|")[0].strip(): [int(c) for c in line.split("|")[1:]] for line in result.output.splitlines() if line.strip()[:1] in "123" and "|" in line}
    assert rows["1"] == [1, 0, 0] and rows["2"] == [0, 1, 0]  # the second dispute names the same people: L2-repeat


def test_backtest_replays_merges_with_each_versions_same_matter_window(tmp_path):
    # The same quarrel through 110 twenty days later: the same matter within 30 days, not within 14.
    candidate = candidate_rules(tmp_path, ("  same_matter:\n    window_days: 30", "  same_matter:\n    window_days: 14"))
    cases = tmp_path / "cases.jsonl"
    lines = [json.dumps(report_payload(event_id="e1", dispute_id="D-1")),
             json.dumps(report_payload(event_id="e2", dispute_id="P-110-1", source="police_110", reported_at="2026-03-22T09:30:00+08:00"))]
    cases.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = runner.invoke(app, ["rules", "backtest", str(candidate), "--against", str(DEFAULT_RULES), "--cases", str(cases)])
    assert result.exit_code == 0, result.output
    assert "before -> after: 1 -> 0" in result.output.splitlines()[-1]


@pytest.mark.parametrize(
    "earlier, matter, case, repeat",
    [
        # The same matter is one case reported again: no repeat_parties, so no L2-repeat.
        ([("e1", "D-1", "family_marriage", "枫源村")], ["D-1"], "joins or reopens one of same_matter, as dispatch finds them", False),
        ([("e1", "D-1", "neighbor", "枫源村")], [], "a case of its own", True),  # another matter: a repeat party only
        ([("e1", "D-1", "family_marriage", "栎桥村")], [], "a case of its own", True),  # another place
        ([("e0", "X-1", "neighbor", "枫源村"), ("e1", "D-1", "family_marriage", "枫源村")], ["D-1"],
         "joins or reopens one of same_matter, as dispatch finds them", True),  # the same matter, and another one before it
    ],
    ids=["same_matter", "other_matter", "other_place", "same_matter_and_another"],
)
def test_explain_with_earlier_cases_shows_the_merge_decision(tmp_path, earlier, matter, case, repeat):
    cases = tmp_path / "cases.jsonl"
    cases.write_text("\n".join(
        json.dumps(report_payload(event_id=e, dispute_id=d, category=c, region={"county": "诸暨市", "town": "枫桥镇", "community": m}))
        for e, d, c, m in earlier
    ) + "\n", encoding="utf-8")
    report = tmp_path / "report.json"
    report.write_text(json.dumps(report_payload(event_id="e9", dispute_id="H-12345-9", source="hotline_12345", reported_at="2026-03-02T11:00:00+08:00")), encoding="utf-8")
    result = runner.invoke(app, ["rules", "explain", str(DEFAULT_RULES), str(report), "--cases", str(cases)])
    assert result.exit_code == 0, result.output
    explained = json.loads(result.output)
    assert (explained["same_matter"], explained["case"]) == (matter, case)
    assert ("repeat_parties" in explained["flags"], "L2-repeat" in [r["id"] for r in explained["matched_rules"]]) == (repeat, repeat)


def keygen(tmp_path):
    result = runner.invoke(app, ["rules", "keygen", str(tmp_path / "signing.pem")])
    assert result.exit_code == 0, result.output
    return tmp_path / "signing.pem", tmp_path / "signing.pem.pub", result.output


def test_keygen_sign_and_verify_round_trip(tmp_path, monkeypatch):
    private, public, output = keygen(tmp_path)
    assert private.stat().st_mode & 0o077 == 0, "the private key is readable by its owner only"
    public_text = public.read_text(encoding="utf-8").strip()
    assert f"TRIAGE_RULES_PUBLIC_KEYS={public_text}" in output and "PRIVATE" not in output
    rules = tmp_path / "rules.yaml"
    rules.write_bytes(DEFAULT_RULES.read_bytes())

    signed = runner.invoke(app, ["rules", "sign", "--key", str(private), str(rules)])
    assert signed.exit_code == 0, signed.output
    assert "ruleset 2026.11.1 signed by key" in signed.output
    assert (tmp_path / "rules.yaml.sig").read_text(encoding="utf-8").startswith("rules_key_id: ")
    for keys in (["--public-key", str(public)], ["--public-key", public_text]):
        verified = runner.invoke(app, ["rules", "verify", *keys, str(rules)])
        assert verified.exit_code == 0 and "signed by trusted key" in verified.output, verified.output
    monkeypatch.setenv("TRIAGE_RULES_PUBLIC_KEYS", public_text)
    assert runner.invoke(app, ["rules", "verify", str(rules)]).exit_code == 0

    rules.write_bytes(DEFAULT_RULES.read_bytes().replace(b">=\": 10}", b">=\": 100}"))
    tampered = runner.invoke(app, ["rules", "verify", str(rules)])
    assert tampered.exit_code == 1 and "signature: does not match the text for key" in tampered.output


# (case, what is wrong, words in the refusal)
REFUSED_SIGNINGS = [
    ("a broken rules file is not signed", "broken", "unknown operator '~'"),
    ("a key file that is not a private key", "key", "not an unencrypted PEM private key"),
]


@pytest.mark.parametrize("case, wrong, words", REFUSED_SIGNINGS, ids=[row[0] for row in REFUSED_SIGNINGS])
def test_sign_refuses_and_writes_nothing(tmp_path, case, wrong, words):
    private, public, _ = keygen(tmp_path)
    rules = tmp_path / "rules.yaml"
    text = DEFAULT_RULES.read_text(encoding="utf-8")
    rules.write_text(text.replace('party_count: {">=": 10}', 'party_count: {"~": 10}') if wrong == "broken" else text, encoding="utf-8")
    key = public if wrong == "key" else private
    result = runner.invoke(app, ["rules", "sign", "--key", str(key), str(rules)])
    assert result.exit_code == 1 and words in result.output, result.output
    assert not (tmp_path / "rules.yaml.sig").exists()


def test_keygen_never_overwrites_a_key(tmp_path):
    private, _, _ = keygen(tmp_path)
    before = private.read_bytes()
    result = runner.invoke(app, ["rules", "keygen", str(private)])
    assert result.exit_code == 1 and "not overwriting" in result.output
    assert private.read_bytes() == before


def test_verify_without_a_signature_or_keys_says_so(tmp_path, monkeypatch):
    _, public, _ = keygen(tmp_path)
    unsigned = runner.invoke(app, ["rules", "verify", "--public-key", str(public), str(DEFAULT_RULES)])
    assert unsigned.exit_code == 1 and "the ruleset is not signed" in unsigned.output
    monkeypatch.delenv("TRIAGE_RULES_PUBLIC_KEYS", raising=False)
    no_keys = runner.invoke(app, ["rules", "verify", str(DEFAULT_RULES)])
    assert no_keys.exit_code == 2 and "no trusted keys" in no_keys.output
