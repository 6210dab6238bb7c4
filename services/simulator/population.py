"""Realistic dispute reports for simulations, in the mix the seeds report (46.2 % family, 31.4 % economic)."""

import random
from datetime import datetime

from schemas.common import Party
from schemas.disputes import DisputeReported, Region, Risk

# (share, categories): family/marriage, economic (wages, debts, contracts), everything else (000).
CATEGORY_MIX = [
    (0.462, ["family_marriage"]),
    (0.314, ["labor_wage", "contract_debt", "enterprise_restructuring", "construction"]),
    (0.224, ["neighbor", "land_homestead", "property_management", "demolition_resettlement", "land_transfer",
             "traffic_accident", "medical", "environment", "consumer_quality", "education_campus", "other"]),
]
SOURCES = ["grid_app", "police_110", "hotline_12345", "door_qr", "walk_in", "patrol", "other"]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
TOWNS = [("诸暨市", "枫桥镇", ["枫源村", "杜黄新村", "陈家村"]), ("诸暨市", "店口镇", ["湄池村", "侠父桥村"])]
EMPLOYERS = ["宏达建筑劳务有限公司", "鑫源五金制品厂", "华东物流有限公司", "永盛纺织有限公司"]
TEMPLATES = {
    "family_marriage": ["夫妻因{thing}发生争吵，{who}请求调解。", "婆媳因{thing}矛盾激化，邻居报警。", "离婚后因抚养费问题多次争执。"],
    "labor_wage": ["{n}名工人被拖欠工资共计{amount}元，要求{employer}支付。", "工人讨要工资未果，与包工头发生冲突。"],
    "contract_debt": ["借款{amount}元到期未还，双方发生纠纷。", "买卖合同货款{amount}元拖欠，多次催讨无果。"],
    "neighbor": ["邻居因{thing}发生口角。", "楼上漏水影响楼下，双方协商不成。"],
}
GENERIC = ["双方因{thing}产生纠纷，请求处理。", "群众反映{thing}问题，情绪较为激动。"]
THINGS = ["家务琐事", "宅基地边界", "装修噪音", "停车位", "彩礼返还", "赡养老人", "排水沟", "物业费"]
RISK_PHRASES = {
    "violence_threat": "一方扬言要拿刀报复。",
    "self_harm_threat": "当事人情绪低落，说不想活了。",
    "mass_gathering": "有工人扬言要拉横幅堵路。",
    "petition_history": "当事人曾多次到县信访局上访。",
}


REFERENCE_YEAR = 2026  # birth years follow from the ages as of this year
# GB 11643-1999: the weights of the first 17 digits, and the check character by the sum modulo 11.
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def id_check_character(body: str) -> str:
    """Return the check character (GB 11643-1999) of an ID number's first 17 digits."""
    return _ID_CHECK[sum(int(d) * w for d, w in zip(body, _ID_WEIGHTS)) % 11]


class ReportFactory:
    """Makes reports: seeded, so a run can be repeated; with group wage disputes and repeat parties."""

    def __init__(self, rng: random.Random, run: str):
        self.rng = rng
        self.run = run
        self.count = 0
        self.phones: list[str] = []

    def _category(self) -> str:
        roll, edge = self.rng.random(), 0.0
        for share, categories in CATEGORY_MIX:
            edge += share
            if roll < edge:
                return self.rng.choice(categories)
        return "other"

    def _person(self, role: str) -> Party:
        # About one report in twenty involves somebody seen in an earlier dispute.
        if self.phones and self.rng.random() < 0.05:
            phone = self.rng.choice(self.phones)
        else:
            phone = f"13{self.rng.randrange(10**9):09d}"
            self.phones.append(phone)
        age = self.rng.choice([8, 15, 34, 45, 52, 67, 78, 83])
        vulnerable = ["minor"] if age < 18 else ["elderly"] if age >= 70 else []
        name = self.rng.choice(SURNAMES) + "某"
        # Every person has a resident ID number: the disclosure policy decides who sees it.
        return Party(role=role, kind="person", name=name, id_number=self._id_number(age), phone=phone, age=age, vulnerable=vulnerable)

    def _id_number(self, age: int) -> str:
        """Make an 18-character resident ID number of 诸暨 (330681) for someone of this age, check character included."""
        body = f"330681{REFERENCE_YEAR - age}{self.rng.randrange(1, 13):02d}{self.rng.randrange(1, 29):02d}{self.rng.randrange(1000):03d}"
        return body + id_check_character(body)

    def make(self, reported_at: datetime) -> DisputeReported:
        """Make the next report, reported at the given (simulated) time."""
        self.count += 1
        category = self._category()
        county, town, communities = self.rng.choice(TOWNS)
        parties = [self._person("complainant"), self._person("respondent")]
        party_count, amount = 2, None
        text = self.rng.choice(TEMPLATES.get(category, GENERIC))
        employer = self.rng.choice(EMPLOYERS)
        if category == "labor_wage":
            parties[1] = Party(role="respondent", kind="organization", name=employer)
            party_count = self.rng.choice([1, 3, 5, 12, 40])
            amount = float(self.rng.randrange(5, 400) * 1000)
        elif category in ("contract_debt", "construction", "enterprise_restructuring"):
            amount = float(self.rng.randrange(1, 300) * 1000)
        description = text.format(thing=self.rng.choice(THINGS), who="妻子", n=party_count, amount=int(amount or 0), employer=employer)
        risk = {}
        if self.rng.random() < 0.08:
            flag = self.rng.choice(list(RISK_PHRASES))
            description += RISK_PHRASES[flag]
            if self.rng.random() < 0.5:
                risk[flag] = True
        return DisputeReported(
            event_id=f"{self.run}-evt-{self.count}",
            dispute_id=f"{self.run}-D{self.count:06d}",
            reported_at=reported_at,
            source=self.rng.choice(SOURCES),
            region=Region(county=county, town=town, community=self.rng.choice(communities), grid_id=f"G-{self.rng.randrange(1, 30):02d}"),
            category=category,
            description=description,
            parties=parties,
            party_count=party_count,
            amount_cny=amount,
            risk=Risk(**risk),
        )


# What another channel's operator writes before the same story (两网融一网: one quarrel, several platforms).
RETOLD = {"police_110": "110接警：", "hotline_12345": "12345热线转办：", "grid_app": "网格员上报：", "door_qr": "群众扫码反映：",
          "walk_in": "群众来访：", "patrol": "巡逻发现：", "other": "其他渠道：", }


def _retold(report: DisputeReported, rng: random.Random) -> dict[str, str]:
    # Another channel than the first, and its operator's words before the same story.
    source = rng.choice([s for s in SOURCES if s != report.source])
    return {"source": source, "description": (RETOLD[source] + report.description)[:5000]}


def reported_elsewhere(report: DisputeReported, rng: random.Random, reported_at: datetime, dispute_id: str) -> DisputeReported:
    """Report the same quarrel through another platform, under that platform's id: the same people, matter and place."""
    return report.model_copy(update={
        "event_id": f"{dispute_id}-evt", "dispute_id": dispute_id, "reported_at": reported_at, "parties": report.parties[:1], **_retold(report, rng),
    })


def reported_again(report: DisputeReported, rng: random.Random, reported_at: datetime, n: int) -> DisputeReported:
    """Report a dispute again under its own id, through another channel (the parties called 110 as well)."""
    return report.model_copy(update={"event_id": f"{report.event_id}-again{n}", "reported_at": reported_at, **_retold(report, rng)})
