"""Reports carrying planted markers, and a dump of every text a store holds, to prove personal data is gone after retention."""

from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from schemas.disputes import DisputeReported
from tests.support.samples import WAGE_REPORT


def marked_report(dispute_id: str, tag: str) -> DisputeReported:
    """Return the wage report of this dispute with a description, names, ID numbers and phones found nowhere else."""
    parties = [
        p.model_copy(update={"name": f"MARK{tag}NAME{n}", "id_number": f"MARK{tag}ID{n}", "phone": f"+86 1{tag} 55{n}"})
        for n, p in enumerate(WAGE_REPORT.parties)
    ]
    return WAGE_REPORT.model_copy(update={"dispute_id": dispute_id, "description": f"MARK{tag}DESC 讨薪", "parties": parties})


def planted(report: DisputeReported) -> set[str]:
    """Return the personal texts of a report: its description and every party's name, ID number and phone."""
    texts = {report.description}
    for party in report.parties:
        texts |= {t for t in (party.name, party.id_number, party.phone) if t}
    return texts


async def store_texts(engine: AsyncEngine) -> list[str]:
    """Return every text and binary value of every row of every table of the store, binaries decoded."""
    values: list[str] = []
    async with engine.connect() as connection:
        tables = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
        for table in tables:
            for row in await connection.execute(text(f'SELECT * FROM "{table}"')):
                for value in row:
                    if isinstance(value, (bytes, memoryview)):
                        values.append(bytes(value).decode("utf-8", errors="replace"))
                    elif isinstance(value, str):
                        values.append(value)
    return values


async def found(engine: AsyncEngine, report: DisputeReported) -> set[str]:
    """Return which of the report's personal texts appear anywhere in the store."""
    dump = await store_texts(engine)
    return {t for t in planted(report) if any(t in value for value in dump)}
