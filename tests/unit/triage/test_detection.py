"""Risk-language detection: the detector's semantics on a small config, the default rules on the kinds of error
issue #24 names, validation of the `detection:` section, the corpus figures, and detections in the output event."""

import dataclasses
import json
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from schemas.disputes import DisputeReported, DisputeTriaged
from services.cli import app
from services.triage.detection import Detection, PatternError, compile_pattern, detect, either, first_characters
from services.triage.evaluation import evaluate, load_corpus
from services.triage.grading import Features, Grader, detect_text
from services.triage.handlers import Accepted, triaged_event
from services.triage.ruleset import DEFAULT_RULES, DetectionSpec, RulesetError, compile_detector, load_ruleset, parse_ruleset
from tests.support.samples import report_payload

RULESET = load_ruleset(DEFAULT_RULES)
DATA = Path(__file__).parents[2] / "data"
CORPUS = DATA / "risk_corpus.jsonl"
HOLDOUT = DATA / "risk_corpus_holdout.jsonl"
BASE = yaml.safe_load(DEFAULT_RULES.read_text(encoding="utf-8"))

# A small detector, so each case shows one mechanism rather than the default rules' tuning.
SMALL = compile_detector(
    DetectionSpec.model_validate(
        {
            "negation": ["没有", "不会", "别"],
            "not_negation": ["别人"],
            "scope_breaks": ["就"],
            "intent": ["扬言", "要"],
            "exclude": ["杀鱼"],
            "flags": {
                "violence_threat": {
                    "patterns": [
                        {"id": "knife", "regex": "动刀|拿刀"},
                        {"id": "kill", "regex": "杀"},
                        {"id": "run_over", "regex": "撞死", "needs_intent": True},
                    ],
                    "exclude": ["杀价"],
                },
                "mass_gathering": {
                    "threshold": 1.0,
                    "patterns": [{"id": "block", "regex": "堵路", "weight": 0.5}, {"id": "crowd", "regex": "村民", "weight": 0.5}],
                },
            },
        }
    )
)

# (case, text, (flag, pattern, phrase) detections)
MECHANISMS = [
    ("a pattern matches", "他拿刀追人", [("violence_threat", "knife", "拿刀")]),
    ("a shared exclusion hides the word", "门口杀鱼摊位占道", []),
    ("a flag's exclusion hides the word", "买菜杀价", []),
    ("negation before the match cancels it", "双方没有动刀", []),
    ("negation reaches only its own clause", "没有钱，他拿刀追人", [("violence_threat", "knife", "拿刀")]),
    ("a scope break ends the negation", "没拿到钱就动刀", [("violence_threat", "knife", "动刀")]),
    ("a word that only contains a cue negates nothing", "别人拿刀追他", [("violence_threat", "knife", "拿刀")]),
    ("a cue after the match does not negate it", "他拿刀，别拦着", [("violence_threat", "knife", "拿刀")]),
    ("intent is needed where the pattern says so", "车祸中撞死一头牛", []),
    ("an intent cue lets it count", "他扬言开车撞死对方", [("violence_threat", "run_over", "撞死")]),
    ("half the weight is not enough", "货车堵路", []),
    ("two half weights reach the threshold", "村民堵路", [("mass_gathering", "block", "堵路"), ("mass_gathering", "crowd", "村民")]),
    ("a repeated pattern counts once", "村民村民", []),
    ("every match is listed", "他拿刀，又要杀人", [("violence_threat", "knife", "拿刀"), ("violence_threat", "kill", "杀")]),
]


@pytest.mark.parametrize("case, text, expected", MECHANISMS, ids=[m[0] for m in MECHANISMS])
def test_detector_mechanisms(case, text, expected):
    assert detect(text, SMALL) == tuple(Detection(*d) for d in expected)


# The kinds of error issue #24 names, written afresh (they are not corpus sentences): (case, text, flags).
KINDS = [
    ("arson threat", "他放话说要把对方的厂房一把火烧了", {"violence_threat"}),
    ("injury described", "老人被儿子打得头破血流", {"violence_threat"}),
    ("last stand", "他说今天就跟开发商拼了", {"violence_threat"}),
    ("self-harm by poison", "她扬言要吃老鼠药", {"self_harm_threat"}),
    ("sit-in", "拆迁户带着亲戚去镇政府门口静坐", {"mass_gathering"}),
    ("over the heads", "他说要到省里告状", {"petition_history"}),
    ("a fishmonger's stall", "杀鱼摊的污水流进了隔壁店", set()),
    ("frying dough sticks", "炸油条的油烟飘进卧室", set()),
    ("a knife shop", "刀具店门口堆满纸箱", set()),
    ("hyperbole", "他说搬砖累得要死", set()),
    ("petition office staff", "信访局工作人员到场协助调解", set()),
    ("negated knife", "两人吵架但没有动刀", set()),
    ("negated self-harm", "他说自己没有轻生的想法", set()),
    ("negated gathering", "现场未见聚集", set()),
]


@pytest.mark.parametrize("case, text, flags", KINDS, ids=[k[0] for k in KINDS])
def test_default_rules_on_the_kinds_of_error(case, text, flags):
    assert detect_text(text, RULESET)[0] == flags


def _holding(detection: dict) -> str:
    return yaml.safe_dump(dict(BASE) | {"detection": detection}, allow_unicode=True)


def _flag(**body) -> dict:
    return {"flags": {"violence_threat": {"patterns": [{"id": "p", "regex": "刀"}]} | body}}


def _pattern(regex: str, **extra) -> dict:
    return {"flags": {"violence_threat": {"patterns": [{"id": "bad", "regex": regex} | extra]}}}


# (case, detection section, words that must be in the error)
BROKEN = [
    ("unknown flag", {"flags": {"arson": {"patterns": [{"id": "p", "regex": "火"}]}}}, ["detection.flags.arson"]),
    ("does not compile", _pattern("(刀"), ["detection.flags.violence_threat.patterns.0", "pattern 'bad'", "does not compile"]),
    ("nested quantifier", _pattern("拿(刀{1,3})?"), ["pattern 'bad'", "nested quantifier"]),
    ("unbounded repeat", _pattern("拿.*刀"), ["pattern 'bad'", "unbounded or wide repeat"]),
    ("too wide a repeat", _pattern("拿.{0,99}刀"), ["unbounded or wide repeat"]),
    ("backreference", _pattern("(刀)\\1"), ["backreferences"]),
    ("a repeated alternation", _pattern("(a|aa){1,30}b"), ["only a single character"]),
    ("too many ways per position", _pattern("拿.{0,30}刀.{0,30}棍.{0,30}人"), ["ways per position"]),
    ("matches nothing but still matches", _pattern("刀?"), ["matches the empty string"]),
    ("too long", _pattern("刀" * 301), ["longer than the limit"]),
    ("unknown pattern key", _pattern("刀", when="always"), ["patterns.0.when", "Extra inputs"]),
    ("zero weight", _pattern("刀", weight=0), ["patterns.0.weight"]),
    ("unreachable threshold", _flag(threshold=2), ["detection.flags.violence_threat", "can never be raised"]),
    ("a bad flag exclusion", _flag(exclude=["a{1,}"]), ["detection.flags.violence_threat.exclude", "[0]", "unbounded"]),
    ("a bad shared exclusion", {"exclude": ["(a|b)*"]}, ["detection.exclude", "unbounded"]),
    ("duplicate pattern ids", {"flags": {"violence_threat": {"patterns": [{"id": "p", "regex": "刀"}, {"id": "p", "regex": "枪"}]}}}, ["ids must be unique", "'p'"]),
    ("empty cue", {"negation": [""]}, ["detection.negation.0"]),
]


@pytest.mark.parametrize("case, detection, words", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_detection_sections_are_refused_naming_flag_and_key(case, detection, words):
    with pytest.raises(RulesetError) as caught:
        parse_ruleset(_holding(detection))
    for word in words:
        assert word in str(caught.value), str(caught.value)


def test_a_flag_is_detected_one_way_only():
    text = yaml.safe_dump(dict(BASE) | {"keywords": {"violence_threat": {"words": ["刀"]}}}, allow_unicode=True)
    with pytest.raises(RulesetError, match="keywords and detection.flags both define violence_threat"):
        parse_ruleset(text)


def test_patterns_are_compiled_once_per_ruleset():
    assert RULESET.detector.flags and all(p.regex.pattern for f in RULESET.detector.flags for p in f.patterns)


@pytest.mark.parametrize("regex", ["[^，。]{0,30}打[^，。]{0,30}死", "(拿|持)(着|了)?.{0,8}(刀|棍)", "a(?!b|c)[a-z]{0,30}"])
def test_allowed_patterns_stay_fast_on_hostile_text(regex):
    # Bounded repeats without nesting: a long adversarial clause costs milliseconds, not minutes.
    pattern = compile_pattern(regex)
    started = time.perf_counter()
    pattern.search("a" * 5000 + "!")
    assert time.perf_counter() - started < 0.5


def test_the_detector_survives_a_long_hostile_description():
    text = ("没有" + "打" * 40 + "，") * 60  # within the 5,000-character description limit
    started = time.perf_counter()
    detect(text, RULESET.detector)
    assert time.perf_counter() - started < 0.5


def test_compile_pattern_refuses_with_a_pattern_error():
    with pytest.raises(PatternError):
        compile_pattern("a+")


def test_default_rules_meet_the_bar_on_the_corpus():
    examples = load_corpus(CORPUS)
    negatives = sum(1 for e in examples if not e.flags)
    assert len(examples) >= 400 and negatives / len(examples) >= 0.4
    result = evaluate(RULESET, examples)
    assert result.micro.precision >= 0.95 and result.micro.recall >= 0.90, (result.micro, result.misses)


def test_default_rules_on_the_holdout_never_tuned_on():
    # A lower bar, as measured once the rules were final (docs/risk-language.md): this file is not for tuning.
    examples = load_corpus(HOLDOUT)
    assert len(examples) >= 80
    result = evaluate(RULESET, examples)
    assert result.micro.precision >= 0.60 and result.micro.recall >= 0.45, result.micro


def test_the_corpora_do_not_share_sentences():
    assert not {e.text for e in load_corpus(CORPUS)} & {e.text for e in load_corpus(HOLDOUT)}


def test_evaluate_prints_scores_and_misses(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    rows = [
        {"text": "他拿着刀追人", "flags": ["violence_threat"]},
        {"text": "邻居吵架", "flags": ["violence_threat"]},
        {"text": "刀具店开业", "flags": []},
    ]
    corpus.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["rules", "evaluate", str(DEFAULT_RULES), "--corpus", str(corpus)])
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if x.startswith("violence_threat"))
    assert line.split()[1:] == ["1", "0", "1", "1.000", "0.500", "0.667"]
    assert "false_negative violence_threat line 2: 邻居吵架" in result.output


def test_evaluate_names_the_line_of_a_bad_corpus(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"text": "x", "flags": ["arson"]}\n', encoding="utf-8")
    result = CliRunner().invoke(app, ["rules", "evaluate", str(DEFAULT_RULES), "--corpus", str(corpus)])
    assert result.exit_code == 1 and ":1: unknown flags ['arson']" in result.output


def test_the_triaged_event_says_which_phrase_raised_a_detected_flag():
    report = DisputeReported.model_validate_json(json.dumps(report_payload(description="讨薪未果，他扬言要喝农药。")))
    features = Features.of_text(report.description, RULESET)
    triage = Grader(RULESET).grade(report, features)
    event = triaged_event(Accepted(None, report.event_id, report, "reported"), triage, RULESET.version, datetime.now(timezone.utc), detections=features.detections)
    assert "detected:self_harm_threat" in event.flags
    assert [(d.flag, d.pattern, d.phrase) for d in event.detections] == [("self_harm_threat", "poison", "喝农药")]
    assert DisputeTriaged.model_validate_json(event.to_bytes()).detections == event.detections


def test_an_event_of_contract_1_2_without_detections_still_reads():
    report = DisputeReported.model_validate_json(json.dumps(report_payload()))
    triage = Grader(RULESET).grade(report, Features())
    event = triaged_event(Accepted(None, report.event_id, report, "reported"), triage, RULESET.version, datetime.now(timezone.utc))
    older = json.loads(event.to_bytes())
    del older["detections"]
    assert DisputeTriaged.model_validate_json(json.dumps(older)).detections == []


# (patterns, the characters a match can start with; None: any)
FIRST_CHARACTERS = [
    (["动刀|拔刀"], set("动拔")),
    (["(拿|持)[着了]?[^，。]{0,4}刀"], set("拿持")),
    (["[用被]刀", "砸"], set("用被砸")),
    (["(往|在)?自己身上"], set("往在自")),  # an optional start: what follows may start the match too
    (["(?=打)打人|\\b喊"], set("打喊")),  # zero-width items consume nothing
    (["[^，。]{1,3}打"], None),  # a negated class starts anywhere
    (["[a-z]x"], set("abcdefghijklmnopqrstuvwxyz")),
    (["(?i)abc"], None),  # case folded: not spelled out
]


@pytest.mark.parametrize("patterns, first", FIRST_CHARACTERS, ids=[p[0][0] for p in FIRST_CHARACTERS])
def test_first_characters_of_patterns(patterns, first):
    assert first_characters([compile_pattern(p) for p in patterns]) == (None if first is None else frozenset(first))


def test_the_first_character_lookahead_changes_no_detection():
    # It only skips positions where no match can start: every corpus sentence detects as with the plain alternation.
    plain = dataclasses.replace(
        RULESET.detector, flags=tuple(dataclasses.replace(f, any_pattern=either([p.regex for p in f.patterns])) for f in RULESET.detector.flags)
    )
    assert all(f.any_pattern.pattern.startswith("(?=[") for f in RULESET.detector.flags)  # the shipped flags all get it
    for path in (CORPUS, HOLDOUT):
        for line in path.read_text(encoding="utf-8").splitlines():
            text = json.loads(line)["text"]
            assert detect(text, RULESET.detector) == detect(text, plain), text
