"""`fengqiao run` end to end: the whole loop on an embedded broker, as a newcomer runs it."""

import json
import re
import subprocess
import sys
import urllib.request

import pytest

from schemas.workorders import DEPARTMENTS
from services.dispatch.disclosure import DEFAULT_DISCLOSURE, load_disclosure
from services.simulator.population import SURNAMES
from tests.support.disclosure import DUE_TOPICS, audit_topics, read_dump

# Phones, ID numbers and the simulated parties' names (a surname and 某), wherever they might leak. Digits
# right after a decimal point are a fraction (a histogram's sum of 59475.14720000002 once matched as a phone).
PERSONAL = re.compile(
    rf"(?<![\d.])1[3-9]\d{{9}}(?!\d)|(?<![0-9A-Za-z.])\d{{17}}[0-9Xx](?![0-9A-Za-z])|[{SURNAMES}]某"
)


@pytest.mark.parametrize(("text", "personal"), [
    ("phone=13812345678", True),
    ('"phone": "13812345678"', True),
    ("id 110101199003071234 refused", True),
    ("id 11010119900307123X", True),
    ("张某 and 李某", True),
    ("fengqiao_followup_timer_lag_seconds_sum 59475.14720000002", False),
    ("duration_sum 0.012345678901234567", False),
    ("created 1.7959453874194415e+09", False),
    ("report r-000123 triaged level 2", False),
])
def test_the_personal_data_pattern_tells_numbers_from_phones_and_ids(text, personal):
    assert bool(PERSONAL.search(text)) is personal


def test_a_short_run_closes_the_loop_and_its_report_agrees_with_the_metrics(tmp_path):
    report_path, dump = tmp_path / "report.json", tmp_path / "topics.jsonl"
    finished = subprocess.run(
        [sys.executable, "-m", "services.runtime", "run", "--disputes", "200", "--days", "10",
         "--workdir", str(tmp_path / "run"), "--report-json", str(report_path), "--dump-topics", str(dump)],
        capture_output=True, text=True, timeout=400,
    )
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    report = json.loads(report_path.read_text())
    metrics = report["metrics"]

    # Every reported dispute was triaged, every triaged dispute got orders, every resolution a revisit.
    assert report["reported"] == report["triaged"] and report["reports_received"] > report["reported"] >= 200
    # Reported again through another platform (about 8 %) or under the same id (about 4 %): counted once, as one case.
    assert report["cases"] + report["merged"] == report["reported"] and report["merged"] > 0
    assert report["rereports"].get("joined", 0) > 0 and sum(report["levels"].values()) == report["cases"]
    assert report["disputes_without_orders"] == 0
    assert report["disputes_resolved"] > 150
    assert report["resolved_in_time_for_a_revisit"] > 100
    assert report["resolved_without_revisit"] == 0, report["disputes_resolved_without_revisit"]

    # The report's counts are the services' own.
    assert report["triaged_events"] == metrics["triaged"]
    assert report["orders"] == metrics["orders_issued"]
    # Departments hear of their orders on their own topics and drop cancelled ones: their updates are answered, few
    # refused, none dead-lettered (nothing they send is malformed or another's); superseded only when sent before the
    # cancellation was read.
    answers = report["update_answers"]
    assert answers["applied"] > 0 and answers["refused"] <= answers["applied"] // 100, answers
    assert sum(report["orders_cancelled"].values()) > 0
    assert 0 < report["result_answers"]["accepted"] <= report["revisit_results"] and report["result_answers"]["refused"] == 0
    assert not [k for k in report["dead_letters"] if k.startswith("workorders.updates.invalid")], report["dead_letters"]
    for figure in ("sla_warnings", "sla_breaches", "revisits_due", "rebounds"):
        assert report[figure] == metrics[figure], figure
    assert 0.5 < metrics["closure_rate"] <= 1 and 0.8 < metrics["mediation_success_rate"] <= 1
    assert set(report["categories"]) >= {"family_marriage", "labor_wage"}
    assert len(report["sources"]) == 7
    assert "closure rate" in finished.stdout and "/metrics was served at" in finished.stdout

    # The run wrote the statistics report of its own stores, and said where.
    assert f"{tmp_path / 'run' / 'report.html'}" in finished.stdout.replace("\n", "")
    page = (tmp_path / "run" / "report.html").read_text(encoding="utf-8")
    assert "调解成功率" in page
    # The statistics report, from dispatch's store, received every report the simulator sent, and counts each case once.
    cards = re.findall(r'data-figure="(\w+)"><div class="name">[^<]*</div><div class="value">([\d,]+)<', page)
    shown = {key: int(value.replace(",", "")) for key, value in cards}
    assert (shown["reports_received"], shown["disputes"]) == (report["reports_received"], report["cases"])
    assert shown["reports_joined"] == report["reports_received"] - report["cases"] > 0

    # No personal data in anything the run wrote besides the topics: logs, exported metrics, the report, console.
    written = {path.name: path.read_text(encoding="utf-8", errors="replace") for path in (tmp_path / "run").glob("*.*") if path.suffix in (".log", ".metrics", ".html")}
    assert {"triage.log", "dispatch.log", "followup.log", "triage.metrics", "dispatch.metrics", "followup.metrics", "report.html"} <= set(written)
    written["console"] = finished.stdout + finished.stderr
    for name, text in written.items():
        assert not PERSONAL.search(text), f"{name}: {PERSONAL.search(text).group(0)!r}"

    # Minimum necessary: every record on every department's orders and due topics and on workorders.events carries each
    # party detail as the disclosure policy shows it to that reader, and no more; the shared followups.due carries
    # no parties at all (tests/support/disclosure.py).
    policy = load_disclosure(DEFAULT_DISCLOSURE)
    audit = audit_topics(read_dump(dump.read_text(encoding="utf-8")), policy)
    assert audit.breaches == [], audit.breaches[:20]
    dues = sum(report[k] for k in ("sla_warnings", "sla_breaches", "revisits_due"))
    # Each due once on its department's topic and once on the shared feed: the report counts the feed alone.
    assert audit.records["workorders.events"] > 0 and audit.records["followups.due"] == dues
    assert sum(n for topic, n in audit.records.items() if topic in DUE_TOPICS) == dues + sum(report["result_answers"].values())
    assert len({topic for topic in audit.records if topic in DUE_TOPICS}) > 1, "addressed to several departments"
    assert sum(n for topic, n in audit.records.items() if topic.removeprefix("workorders.") in DEPARTMENTS) == report["orders"] + report["department_notices"]
    # The audit saw every kind of disclosure the policy makes: ID numbers to the police alone, masked phones to support.
    seen = {(reader.split(":")[-1] if ":" in reader else reader, name, shown) for reader, name, shown in audit.checked}
    assert {("lead", "phone", "full"), ("support", "phone", "masked"), ("support", "name", "masked"), ("lead", "id_number", "withheld"),
            ("revisit", "phone", "full"), ("revisit", "id_number", "withheld"), ("events", "id_number", "withheld")} <= seen
    assert audit.checked["community_police:lead", "id_number", "full"] > 0

    # Nothing is left running.
    for url in report["metrics_urls"].values():
        with pytest.raises(OSError):
            urllib.request.urlopen(url, timeout=1)
