"""The end of `make run`: a summary that reads at 80 columns, with bars, no JSON, each figure once."""

import re

from rich.cells import cell_len
from rich.console import Console

from services.simulator.cli import SUMMARY_WIDTH, print_report

REPORT = {
    "simulated_days": 48.0, "reports_received": 2_254, "cases": 2_000, "rereports": {"joined": 151, "regraded": 9, "reopened": 4},
    "orders": 4_812, "disputes_resolved": 1_903, "sla_warnings": 310, "sla_breaches": 41, "revisits_due": 3_650, "rebounds": 57,
    "levels": {1: 1_210, 2: 602, 3: 188},
    "categories": {"family_marriage": 924, "labor_wage": 311, "neighbor": 250, "contract_debt": 140, "land_transfer": 90,
                   "traffic_accident": 80, "property_management": 70, "construction": 60, "demolition_resettlement": 45, "other": 30},
    "sources": {"grid_app": 700, "police_110": 600, "hotline_12345": 500, "door_qr": 200, "walk_in": 150, "patrol": 74, "other": 30},
    "orders_by_department": {"community_police": 1_300, "mediation_room": 700, "women_federation": 650, "labor_arbitration": 320},
    "update_answers": {"applied": 9_120, "superseded": 23, "refused": 2}, "refusals": {"illegal_transition": 2},
    "orders_cancelled": {"superseded": 140, "rerouted": 61}, "result_answers": {"accepted": 1_800, "refused": 0},
    "dead_letters": {"workorders.updates.invalid: department": 1},
    "triage_latency_ms": {"p50": 41.0, "p99": 180.5}, "dispatch_latency_ms": {"p50": 63.2, "p99": 240.0},
    "metrics_urls": {"triage": "http://127.0.0.1:8101/metrics"},
    "metrics": {"orders_issued": 4_812, "sla_warnings": 310, "sla_breaches": 41, "revisits_due": 3_650, "rebounds": 56,
                "closure_rate": 0.9312, "mediation_success_rate": 0.944, "satisfaction_average": 4.61},
}


def rendered(report: dict) -> str:
    out = Console(width=SUMMARY_WIDTH, record=True, color_system=None, force_terminal=False)
    print_report(report, out)
    return out.export_text()


def test_the_summary_fits_80_columns_and_carries_no_json():
    text = rendered(REPORT)
    assert max(cell_len(line) for line in text.splitlines()) <= SUMMARY_WIDTH  # in terminal cells: 调解 takes four
    assert not re.search(r"[{}\\[\\]]|\": ", text), "no JSON in a cell"


def test_each_figure_is_shown_once_and_a_disagreement_with_the_metrics_is_named():
    text = rendered(REPORT)
    assert "2254 / 2000" in text and "151 / 9 / 4" in text
    assert "work orders 工单" in text and "(services' metrics" not in text.split("rebounds")[0]
    [rebounds] = [line for line in text.splitlines() if line.strip().startswith("rebounds")]
    assert "57" in rebounds and "services' metrics: 56" in rebounds
    assert "closure rate" in text and "93.1%" in text
    assert "9120 / 23 / 2" in text and "140 / 61" in text and "illegal_transition" in text


def test_every_dimension_is_a_table_with_proportional_bars():
    lines = rendered(REPORT).splitlines()
    bar = {line.split()[0]: line.count("█") for line in lines if "█" in line}
    assert bar["community_police"] == 24 and 11 <= bar["mediation_room"] <= 14  # 700 of 1,300
    assert any(line.strip().startswith("(others)") for line in lines), "a long dimension sums its tail"
