"""`fengqiao triage` runs the service; `fengqiao rules ...` checks, explains, backtests, signs and publishes rules files."""

import asyncio
import json
import os
import secrets
import sys
from collections import Counter
from pathlib import Path

import typer
from aiokafka import AIOKafkaProducer
from pydantic import ValidationError

from schemas.deadletters import rejection_reason
from schemas.disputes import DisputeReported
from schemas.rules import RULES_TRIAGE, RULES_TRIAGE_KEY
from services.runtime.http import run_service
from services.runtime.kafka import client_options
from services.runtime.settings import KafkaSettings
from services.triage.correlation import Hasher, correlate, same_matter, subject_of
from services.triage.grading import Features, Grader
from services.triage.ruleset import CORRELATION_FLAGS, CorrelationSpec, RulesetError, load_ruleset
from services.triage.signing import (
    SignatureError,
    format_sidecar,
    key_id,
    load_private_key,
    private_key_pem,
    public_key_text,
    read_sidecar,
    sidecar_path,
    sign,
    split_keys,
    to_headers,
    trusted_keys,
    verify,
)

rules_app = typer.Typer(help="Check, explain, backtest, sign and publish triage rules files.", no_args_is_help=True)


def run_triage(
    port: int = typer.Option(None, help="HTTP port for /metrics and /health; default TRIAGE_HTTP_PORT or a free one."),
) -> None:
    """Run the triage service until SIGINT or SIGTERM."""
    from services.triage.app import create_app
    from services.triage.settings import TriageSettings

    run_service("triage", TriageSettings, create_app, port, refusals=(RulesetError,))


def _load(path: Path) -> Grader:
    try:
        return Grader(load_ruleset(path))
    except (RulesetError, OSError) as error:
        typer.echo(f"{path}: {error}", err=True)
        raise typer.Exit(1) from None


def _explain(grader: Grader, report: DisputeReported, correlated: frozenset[str] = frozenset()) -> dict[str, object]:
    features = Features.of_text(report.description, grader.ruleset, correlated)
    triage = grader.grade(report, features)
    return {
        "ruleset_version": grader.version,
        "level": triage.level,
        "tier": triage.tier,
        "urgency": triage.urgency,
        "flags": triage.flags,
        "matched_rules": [r.model_dump() for r in triage.matched_rules],
        "detections": [{"flag": d.flag, "pattern": d.pattern, "phrase": d.phrase} for d in features.detections],
    }


@rules_app.command("check")
def rules_check(file: Path) -> None:
    """Validate a rules file; exit 1 with the rule and key at fault."""
    grader = _load(file)
    typer.echo(f"{file}: ruleset {grader.version} is valid ({len(grader.ruleset.rules)} rules)")


@rules_app.command("explain")
def rules_explain(
    file: Path,
    report: Path,
    cases: Path | None = typer.Option(None, "--cases", help="Earlier reports, one JSON object per line: correlate against them."),
) -> None:
    """Grade one report (JSON) and print level, tier, urgency, matched rules and, with --cases, its correlation and same matter."""
    grader = _load(file)
    try:
        parsed = DisputeReported.model_validate_json(report.read_bytes())
    except ValidationError as error:
        typer.echo(f"{report}: {rejection_reason(error)}", err=True)
        raise typer.Exit(1) from None
    if cases is None:
        typer.echo(json.dumps(_explain(grader, parsed), ensure_ascii=False, indent=2))
        return
    earlier = [r for _, r in _read_cases(cases)[0]] + [parsed]
    spec = grader.ruleset.spec.correlation
    explained = _explain(grader, parsed, replay_correlation(earlier, spec)[parsed.event_id])
    matter = replay_same_matter(earlier, spec)[parsed.event_id]
    explained["same_matter"] = list(matter)
    # The case is dispatch's to decide, from each one's state: the first open one is joined; else one resolved within
    # the routing file's cases.reopen_within_days is reopened as a rebound; else the report is a case of its own.
    explained["case"] = "joins or reopens one of same_matter, as dispatch finds them" if matter else "a case of its own"
    typer.echo(json.dumps(explained, ensure_ascii=False, indent=2))


@rules_app.command("evaluate")
def rules_evaluate(
    file: Path,
    corpus: Path = typer.Option(..., "--corpus", help="Labelled sentences, one {\"text\": ..., \"flags\": [...]} per line."),
) -> None:
    """Measure a rules file's risk-language detection on a labelled corpus: per-flag precision, recall, F1 and the misses."""
    from services.triage.evaluation import evaluate, load_corpus, report_lines

    grader = _load(file)
    try:
        examples = load_corpus(corpus)
    except (OSError, ValueError) as error:
        typer.echo(f"{corpus}: {error}", err=True)
        raise typer.Exit(1) from None
    for line in report_lines(evaluate(grader.ruleset, examples)):
        typer.echo(line)


def _read_cases(cases: Path) -> tuple[list[tuple[int, DisputeReported]], int]:
    """Read recorded reports, one JSON object a line; report and count the lines that are not valid reports."""
    read, invalid = [], 0
    for number, line in enumerate(cases.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            read.append((number, DisputeReported.model_validate_json(line)))
        except ValidationError as error:
            invalid += 1
            typer.echo(f"line {number}: skipped: {rejection_reason(error)}", err=True)
    return read, invalid


def replay_correlation(reports: list[DisputeReported], spec: CorrelationSpec) -> dict[str, frozenset[str]]:
    """Correlate recorded reports in report order as the service would, with an in-memory store, keyed by event id.

    The service correlates each report with the store's earlier sightings and the earlier reports of its
    batch; replaying every report as one ordered batch against an empty store gives the same flags, since
    windows run on the reports' own times. A repeated event id is correlated once, as the service drops repeats.
    """
    return correlate(_subjects(reports, spec), {}, spec)


def replay_same_matter(reports: list[DisputeReported], spec: CorrelationSpec) -> dict[str, tuple[str, ...]]:
    """Name, per recorded report, the earlier disputes of the same matter, replayed as `replay_correlation` does."""
    return same_matter(_subjects(reports, spec), {}, spec)


def _subjects(reports: list[DisputeReported], spec: CorrelationSpec) -> list:
    hasher = Hasher(secrets.token_bytes(32))  # keys never leave this process
    unique = {r.event_id: r for r in reversed(reports)}  # the first occurrence of each event id
    ordered = sorted(unique.values(), key=lambda r: r.reported_at)
    return [subject_of(r.event_id, r, hasher, spec) for r in ordered]


@rules_app.command("backtest")
def rules_backtest(
    candidate: Path,
    against: Path = typer.Option(..., "--against", help="The ruleset in use now."),
    cases: Path = typer.Option(..., "--cases", help="Recorded reports, one JSON object per line."),
    show: int = typer.Option(20, help="How many changed cases to print."),
) -> None:
    """Grade recorded reports with both versions, correlation included: a level-change table and the changed cases (shadow test)."""
    new, current = _load(candidate), _load(against)
    read, invalid = _read_cases(cases)
    reports = [report for _, report in read]
    # Each version correlates with its own windows, so a change to `correlation:` is shadow-tested too.
    correlated_before = replay_correlation(reports, current.ruleset.spec.correlation)
    correlated_after = replay_correlation(reports, new.ruleset.spec.correlation)
    table: Counter[tuple[int, int]] = Counter()
    changed = []
    for number, report in read:
        before = _explain(current, report, correlated_before[report.event_id])
        after = _explain(new, report, correlated_after[report.event_id])
        table[before["level"], after["level"]] += 1
        if (before["level"], before["urgency"]) != (after["level"], after["urgency"]):
            changed.append({"line": number, "event_id": report.event_id, "before": before, "after": after})
    _print_backtest(current.version, new.version, table, changed[:show], len(changed), invalid)
    counts = {
        flag: [sum(flag in found for found in correlated.values()) for correlated in (correlated_before, correlated_after)]
        for flag in CORRELATION_FLAGS
    }
    typer.echo("correlation, events flagged before -> after: " + ", ".join(f"{flag} {b} -> {a}" for flag, (b, a) in counts.items()))
    merged = [sum(bool(m) for m in replay_same_matter(reports, v.ruleset.spec.correlation).values()) for v in (current, new)]
    typer.echo(f"same matter (join or reopen an earlier case if dispatch holds it open or recent), before -> after: {merged[0]} -> {merged[1]}")


def _print_backtest(current: str, new: str, table: Counter, changed: list, n_changed: int, invalid: int) -> None:
    total = sum(table.values())
    typer.echo(f"backtest: {total} reports, {current} -> {new}, {n_changed} changed, {invalid} invalid skipped")
    typer.echo("level before \\ after |      1 |      2 |      3")
    for before in (1, 2, 3):
        typer.echo(f"{before:>20} | " + " | ".join(f"{table[before, after]:>6}" for after in (1, 2, 3)))
    for case in changed:
        typer.echo(json.dumps(case, ensure_ascii=False))
    sys.stdout.flush()


@rules_app.command("keygen")
def rules_keygen(private_key: Path = typer.Argument(..., help="Where to write the private key (PEM); the public key goes to the same name + .pub")) -> None:
    """Make an Ed25519 key pair for signing rules files; print the public key for TRIAGE_RULES_PUBLIC_KEYS."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    public = private_key.with_name(private_key.name + ".pub")
    key = Ed25519PrivateKey.generate()
    try:
        # Exclusive create, owner-only from the first byte: never overwrite a key, never leave one readable.
        descriptor = os.open(private_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        typer.echo(f"{private_key} exists; not overwriting a key", err=True)
        raise typer.Exit(1) from None
    with os.fdopen(descriptor, "wb") as out:
        out.write(private_key_pem(key))
    public.write_text(public_key_text(key.public_key()) + "\n", encoding="utf-8")
    typer.echo(f"wrote {private_key} (secret: keep it off the servers) and {public}, key id {key_id(key.public_key())}")
    typer.echo(f"TRIAGE_RULES_PUBLIC_KEYS={public_key_text(key.public_key())}")


@rules_app.command("sign")
def rules_sign(
    file: Path,
    key: Path = typer.Option(..., "--key", help="Ed25519 private key file (PEM), as `rules keygen` writes."),
) -> None:
    """Check a rules file, then sign its exact bytes: write FILE.sig, the rules.triage headers as `name: value` lines."""
    grader = _load(file)
    try:
        private = load_private_key(key.read_bytes())
    except (OSError, ValueError) as error:
        typer.echo(f"{key}: {error}", err=True)
        raise typer.Exit(1) from None
    signature = sign(file.read_bytes(), private)
    sidecar_path(file).write_text(format_sidecar(signature), encoding="utf-8")
    typer.echo(f"{sidecar_path(file)}: ruleset {grader.version} signed by key {signature.key_id}")


def _public_keys(options: list[str] | None) -> list[str]:
    if not options:
        return list(split_keys(os.environ.get("TRIAGE_RULES_PUBLIC_KEYS", "")))
    # Each option is a key, or a file holding one (a `.pub` from `rules keygen`, or PEM).
    return [Path(o).read_text(encoding="utf-8") if Path(o).is_file() else o for o in options]


@rules_app.command("verify")
def rules_verify(
    file: Path,
    public_key: list[str] = typer.Option(None, "--public-key", help="Trusted key or key file; repeatable. Default TRIAGE_RULES_PUBLIC_KEYS."),
) -> None:
    """Check that FILE.sig is a trusted key's signature of FILE, as triage will; exit 1 with the reason otherwise."""
    try:
        keys = trusted_keys(_public_keys(public_key))
    except ValueError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(2) from None
    if not keys:
        typer.echo("no trusted keys: give --public-key or set TRIAGE_RULES_PUBLIC_KEYS", err=True)
        raise typer.Exit(2)
    try:
        signer = verify(file.read_bytes(), read_sidecar(file), keys)
    except (SignatureError, OSError) as error:
        typer.echo(f"{file}: {error}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{file}: signed by trusted key {signer}")


@rules_app.command("publish")
def rules_publish(file: Path) -> None:
    """Publish a rules file with its signature (FILE.sig) on rules.triage at KAFKA_BOOTSTRAP_SERVERS."""
    kafka = KafkaSettings()
    if not kafka.bootstrap_servers:
        typer.echo("KAFKA_BOOTSTRAP_SERVERS is not set", err=True)
        raise typer.Exit(2)
    grader = _load(file)
    signature = read_sidecar(file)
    if signature is None:
        typer.echo(f"{file}: no {sidecar_path(file).name}: a triage with TRIAGE_RULES_PUBLIC_KEYS set will refuse it", err=True)
    headers = to_headers(signature) if signature else {}
    asyncio.run(_produce(kafka, kafka.topic(RULES_TRIAGE), RULES_TRIAGE_KEY, file.read_bytes(), headers))
    typer.echo(f"published ruleset {grader.version} on {kafka.topic(RULES_TRIAGE)}" + (f", signed by key {signature.key_id}" if signature else ", unsigned"))


async def _produce(kafka: KafkaSettings, topic: str, key: bytes, value: bytes, headers: dict[str, str]) -> None:
    producer = AIOKafkaProducer(**client_options(kafka, kafka.bootstrap_servers), acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key, headers=[(name, text.encode()) for name, text in headers.items()])
    finally:
        await producer.stop()
