"""Display names of the report: the county's statistics vocabulary in Chinese, with the English identifier beside it."""

CATEGORIES = {
    "family_marriage": "婚姻家庭",
    "neighbor": "邻里纠纷",
    "land_homestead": "土地宅基地",
    "labor_wage": "劳资欠薪",
    "contract_debt": "合同债务",
    "property_management": "物业管理",
    "demolition_resettlement": "征地拆迁安置",
    "land_transfer": "土地流转",
    "enterprise_restructuring": "企业改制",
    "construction": "工程建设",
    "traffic_accident": "交通事故",
    "medical": "医疗纠纷",
    "environment": "生态环境",
    "consumer_quality": "消费质量",
    "education_campus": "教育校园",
    "other": "其他",
}
SOURCES = {
    "grid_app": "网格员APP",
    "police_110": "110接处警",
    "hotline_12345": "12345热线",
    "door_qr": "智慧门牌扫码",
    "walk_in": "来访",
    "patrol": "巡逻发现",
    "other": "其他",
}
LEVELS = {1: "一级 简单", 2: "二级 复杂", 3: "三级 重大疑难"}
TIERS = {1: "就地化解 on site", 2: "调解室 mediation room", 3: "会商研判 joint consultation"}
DEPARTMENTS = {
    "community_police": "社区民警",
    "mediation_room": "调解室",
    "joint_consultation": "三长会商",
    "governance_centre": "综治中心",
    "justice_office": "司法所",
    "court": "法庭",
    "women_federation": "妇联",
    "civil_affairs": "民政",
    "labor_arbitration": "劳动仲裁",
    "housing_construction": "住建",
    "natural_resources": "自然资源",
    "ecology_environment": "生态环境",
    "traffic_police": "交警",
    "education": "教育",
    "health": "卫健",
    "market_supervision": "市场监管",
    "petition_office": "信访",
    "psychological_counseling": "心理疏导",
    "law_enforcement": "综合执法",
    "legal_aid": "法律援助",
}
RISKS = {
    "violence_threat": "暴力倾向",
    "weapon_involved": "涉及凶器",
    "self_harm_threat": "自伤自杀风险",
    "mass_gathering": "群体性聚集",
    "cross_region": "跨区域",
    "petition_history": "信访历史",
}
ESCALATIONS = {
    "returned": "退回综治中心 order returned to the governance centre",
    "mediation_failed": "调解不成重新分级 mediation failed, graded again",
    "regraded": "重新分级的纠纷 disputes graded again",
    "raised_to_level_3": "升为三级 raised to level 3",
}


def named(names: dict, key) -> str:
    """Return a key's display name: the Chinese term and the identifier, or the identifier alone when it has none."""
    return f"{names[key]} {key}" if key in names else str(key)
