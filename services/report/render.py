"""The report rendered from its figures: a self-contained HTML page with SVG bar charts, CSV tables and JSON.

The charts are inline SVG drawn here: the page needs no script, no font or file beside it, and renders offline.
"""

import csv
import dataclasses
import json
from html import escape
from pathlib import Path

from services.report.figures import Figure, Report, Table

COLUMN_NAMES = {
    "key": "代码 key",
    "name": "名称 name",
    "disputes": "受理 disputes",
    "settled": "办结 settled",
    "closure_rate": "办结率 closure",
    "resolutions": "化解 resolved",
    "mediation_success_rate": "调解成功率 mediation success",
    "orders": "派单 orders",
    "resolved_orders": "工单办结 resolved",
    "order_closure_rate": "工单办结率 order closure",
    "deadline_met_rate": "按期办结率 on time",
    "sla_breaches": "超期 breaches",
    "settled_as_lead": "化解（牵头）settled as lead",
    "escalation": "升级 escalation",
    "count": "次数 count",
    "score": "满意度 score",
    "results": "回访结果 results",
    "reports": "收到上报 reports",
    "cases_opened": "立案 cases opened",
    "joined": "并案 joined cases",
}
RATE_COLUMNS = {"closure_rate", "mediation_success_rate", "order_closure_rate", "deadline_met_rate"}

_STYLE = """
body{font-family:"Noto Sans CJK SC","WenQuanYi Zen Hei","Microsoft YaHei",sans-serif;margin:24px auto;max-width:1100px;color:#1d2733;background:#f6f7f9}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:0 0 8px;border-left:4px solid #b3261e;padding-left:8px}
.meta{color:#51606f;margin:0 0 16px}.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(200px,1fr));gap:10px}
.card{background:#fff;border-radius:6px;padding:10px 12px;box-shadow:0 1px 2px #0002}.card .name{font-size:13px;color:#51606f}
.card .value{font-size:26px;font-weight:600;color:#b3261e}.definition{font-size:11px;color:#6b7785;margin:4px 0 0;overflow-wrap:anywhere}
section{background:#fff;border-radius:6px;padding:14px;margin:16px 0;box-shadow:0 1px 2px #0002}
table{border-collapse:collapse;width:100%;font-size:13px;margin-top:8px}th,td{border-bottom:1px solid #e3e6ea;padding:4px 6px;text-align:right}
th:first-child,td:first-child,th:nth-child(2),td:nth-child(2){text-align:left}th{background:#eef1f4}
svg.chart text{font-size:12px;fill:#1d2733}svg.chart rect.bar{fill:#c0392b}
"""


def formatted(value, kind: str) -> str:
    """Format a value for the page: rates as percentages, scores with two decimals, None as a dash."""
    if value is None:
        return "—"
    if kind == "rate":
        return f"{value:.1%}"
    if kind == "score":
        return f"{value:.2f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _cell(column: str, value) -> str:
    return formatted(value, "rate" if column in RATE_COLUMNS else "count")


def bar_chart(table: Table, width: int = 720) -> str:
    """Draw a table's chart column as horizontal SVG bars, one per row, labelled with the row's name and value."""
    label_at = table.columns.index("name") if "name" in table.columns else 0
    value_at = table.columns.index(table.chart)
    bars = [(str(row[label_at]), row[value_at] or 0) for row in table.rows]
    top = max((value for _, value in bars), default=0) or 1
    row_height, label_width, value_width = 24, 260, 60
    span = width - label_width - value_width
    parts = [f'<svg class="chart" data-chart="{escape(table.key)}" width="{width}" height="{row_height * len(bars) + 4}" role="img" '
             f'aria-label="{escape(table.title)}" xmlns="http://www.w3.org/2000/svg">']
    for n, (label, value) in enumerate(bars):
        y = n * row_height + 2
        length = max(1.0, span * value / top) if value else 0
        parts.append(
            f'<text x="{label_width - 6}" y="{y + 16}" text-anchor="end">{escape(label[:28])}</text>'
            f'<rect class="bar" x="{label_width}" y="{y + 3}" width="{length:.1f}" height="{row_height - 6}"><title>{escape(label)}: {value}</title></rect>'
            f'<text x="{label_width + length + 4:.1f}" y="{y + 16}">{escape(formatted(value, "count"))}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _card(figure: Figure) -> str:
    return (f'<div class="card" data-figure="{escape(figure.key)}"><div class="name">{escape(figure.name)}</div>'
            f'<div class="value">{escape(formatted(figure.value, figure.kind))}</div><p class="definition">{escape(figure.definition)}</p></div>')


def _table(table: Table) -> str:
    head = "".join(f"<th>{escape(COLUMN_NAMES.get(c, c))}</th>" for c in table.columns)
    body = "".join("<tr>" + "".join(f"<td>{escape(_cell(c, v))}</td>" for c, v in zip(table.columns, row)) + "</tr>" for row in table.rows)
    chart = bar_chart(table) if table.chart and table.rows else '<p class="empty">无数据 no data</p>'
    return (f'<section id="{escape(table.key)}"><h2>{escape(table.title)}</h2>{chart}'
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table><p class=\"definition\">{escape(table.definition)}</p></section>")


def html(report: Report) -> str:
    """Render the report as one self-contained HTML page."""
    meta = (f"统计期间 period: {report.period} · 区域 area: {report.area} · 部门 department: {report.department}"
            + (f" · 生成于 generated {report.generated_at}" if report.generated_at else ""))
    return (
        '<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8">'
        f"<title>{escape(report.title)} · {escape(report.period)}</title><style>{_STYLE}</style></head><body>"
        f'<h1>{escape(report.title)}</h1><p class="meta">{escape(meta)}</p>'
        f'<div class="cards">{"".join(_card(f) for f in report.figures)}</div>'
        f'{"".join(_table(t) for t in report.tables)}'
        '<p class="definition">数据来源：派单（dispatch）与回访（follow-up）服务的库；仅含统计数字，不含姓名、电话、身份证号及纠纷描述。'
        "Figures only, from dispatch's and follow-up's stores: no names, phones, ID numbers or descriptions.</p></body></html>"
    )


def write_csv(report: Report, directory: Path) -> list[Path]:
    """Write the headline figures and every table as one CSV file each in `directory`; return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    # With a byte-order mark, spreadsheet programs read the Chinese names as UTF-8.
    written = [directory / "summary.csv"]
    with written[0].open("w", newline="", encoding="utf-8-sig") as out:
        writer = csv.writer(out)
        writer.writerow(["key", "name", "value", "kind", "definition"])
        writer.writerows([f.key, f.name, "" if f.value is None else f.value, f.kind, f.definition] for f in report.figures)
    for table in report.tables:
        path = directory / f"{table.key}.csv"
        with path.open("w", newline="", encoding="utf-8-sig") as out:
            writer = csv.writer(out)
            writer.writerow(table.columns)
            writer.writerows([["" if v is None else v for v in row] for row in table.rows])
        written.append(path)
    return written


def as_json(report: Report) -> str:
    """Render the report as JSON: the same figures and tables, rates as fractions."""
    return json.dumps(dataclasses.asdict(report), ensure_ascii=False, indent=2)
