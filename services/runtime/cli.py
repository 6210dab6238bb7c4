"""The `fengqiao` command line: one entry point, one subcommand per job."""

import asyncio
import logging
import signal
import sys
import time

import typer

from services.runtime.embedded import EmbeddedBroker
from services.runtime.kafka import TlsSetupError, verify_broker_certificate
from services.runtime.settings import EnvironmentSettings, KafkaSettings
from services.runtime.topics import PRODUCTION_PARTITIONS, PRODUCTION_REPLICAS, contract_topics, ensure_topics

app = typer.Typer(help="Fengqiao dispute-triage pipeline (矛盾纠纷排查化解).", no_args_is_help=True)
schemas_app = typer.Typer(help="Generated contract documents (JSON Schema, AsyncAPI).", no_args_is_help=True)
app.add_typer(schemas_app, name="schemas")
topics_app = typer.Typer(help="Topics on a Kafka cluster.", no_args_is_help=True)
app.add_typer(topics_app, name="topics")
acls_app = typer.Typer(help="Kafka ACLs and users of every service and department, generated from the topic catalogue.", no_args_is_help=True)
app.add_typer(acls_app, name="acls")


def _catch_stop_signals() -> list[int]:
    """Record SIGINT and SIGTERM instead of dying, so the caller can stop cleanly."""
    received: list[int] = []

    def _stop(signum: int, _frame: object) -> None:
        received.append(signum)

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    return received


@app.command()
def broker(
    port: int = typer.Option(0, help="Port to listen on; 0 picks a free one."),
    partitions: int = typer.Option(4, help="Partitions of each contract topic created at start."),
) -> None:
    """Run the embedded Kafka-protocol broker in the foreground until Ctrl-C."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Catch the stop signals before announcing the address: a supervisor may stop us right after reading it.
    received = _catch_stop_signals()
    embedded = EmbeddedBroker(port=port or None)
    bootstrap = embedded.start()
    try:
        asyncio.run(ensure_topics(KafkaSettings(), bootstrap, contract_topics(partitions)))
        typer.echo(f"KAFKA_BOOTSTRAP_SERVERS={bootstrap}", color=False)
        sys.stdout.flush()
        while not received:
            time.sleep(0.1)  # a signal interrupts the sleep; pause() could miss one that came first
    finally:
        embedded.stop()
        typer.echo("embedded broker stopped")


@topics_app.command("create")
def topics_create(
    partitions: int = typer.Option(PRODUCTION_PARTITIONS, help="Partitions of each flowing topic (dead letters and rules get one)."),
    replication_factor: int = typer.Option(PRODUCTION_REPLICAS, help="Replicas of each topic."),
) -> None:
    """Create the contract topics of FENGQIAO_ENV that do not exist yet on KAFKA_BOOTSTRAP_SERVERS (rules.triage compacted)."""
    settings = KafkaSettings()
    if not settings.bootstrap_servers:
        typer.echo("KAFKA_BOOTSTRAP_SERVERS is not set", err=True)
        raise typer.Exit(2)
    try:
        verify_broker_certificate(settings)
    except TlsSetupError as error:
        typer.echo(f"fengqiao topics create: {error}", err=True)
        raise typer.Exit(2) from None
    specs = contract_topics(partitions, EnvironmentSettings().environment)
    created = asyncio.run(ensure_topics(settings, settings.bootstrap_servers, specs, replication_factor))
    typer.echo(f"created {len(created)} topics" + (f": {', '.join(created)}" if created else ""))


@schemas_app.command("generate")
def schemas_generate() -> None:
    """Write schemas/json and schemas/asyncapi from the models."""
    from schemas.generate import write

    for path in write():
        typer.echo(f"wrote {path}")


@schemas_app.command("check")
def schemas_check() -> None:
    """Fail when the committed documents drift from the models."""
    from schemas.generate import drift

    problems = drift()
    for problem in problems:
        typer.echo(problem, err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo("schemas up to date")



@acls_app.command("generate")
def acls_generate() -> None:
    """Write deploy/acls/*.sh, deploy/k8s/kafka-users.yaml, deploy/k8s/kafka-topics.yaml and compose's passwords from the catalogue."""
    from services.runtime.acls import write

    for path in write():
        typer.echo(f"wrote {path}")


@acls_app.command("check")
def acls_check() -> None:
    """Fail when the committed ACL files drift from the catalogue."""
    from services.runtime.acls import drift

    problems = drift()
    for problem in problems:
        typer.echo(problem, err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo("acls up to date")
