"""Follow-up's store alone speaks SQL, and the decision modules touch no database, broker, event loop or clock."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
# Every follow-up module but its store, found afresh: a new module is held to the rule without editing this table.
FOLLOWUP = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "services" / "followup").glob("*.py") if p.name != "store.py")
SQL = ("sqlalchemy", "text()", ".execute()")
IO = ("sqlalchemy", "aiokafka", "faststream", "asyncio")
CLOCK = ("datetime.now()", "datetime.utcnow()", "datetime.today()", "date.today()", "time.time()", "time.monotonic()")
# The pure decisions: given the inputs and the time as arguments, each answers alone, so a unit test can pin it.
PURE = (
    "services/followup/timers.py",
    "services/triage/grading.py",
    "services/dispatch/routing.py",
    "services/dispatch/lifecycle.py",
    "services/dispatch/cases.py",
)
ROWS = [(module, SQL) for module in FOLLOWUP] + [(module, IO + CLOCK) for module in PURE]


def used(source: str) -> set[str]:
    """Return the top-level packages a module imports and the calls it makes, as `name()`, `.attr()` and `owner.attr()`."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call):
            called = node.func
            if isinstance(called, ast.Name):
                found.add(f"{called.id}()")
            elif isinstance(called, ast.Attribute):
                found.add(f".{called.attr}()")
                owner = called.value
                # datetime.now() and datetime.datetime.now() alike: the owner is the last name before the call.
                if isinstance(owner, ast.Name):
                    found.add(f"{owner.id}.{called.attr}()")
                elif isinstance(owner, ast.Attribute):
                    found.add(f"{owner.attr}.{called.attr}()")
    return found


def used_by(module: str) -> set[str]:
    """Return what a module of the repository imports and calls."""
    return used((ROOT / module).read_text(encoding="utf-8"))


@pytest.mark.parametrize("module, forbidden", ROWS, ids=[f"{module}-{'sql' if forbidden is SQL else 'io-and-clock'}" for module, forbidden in ROWS])
def test_a_module_uses_nothing_its_layer_forbids(module, forbidden):
    assert not used_by(module) & set(forbidden), f"{module} uses {sorted(used_by(module) & set(forbidden))}"


def test_the_check_sees_sql_imports_calls_and_clock_readings():
    # Without this, a checker that found nothing would pass every row above.
    assert {"sqlalchemy", ".execute()"} <= used_by("services/followup/store.py")
    sample = "import asyncio\nimport datetime\nimport time\nasyncio.run(datetime.datetime.now().second + time.time())\ntext('SELECT 1')\n"
    assert {"asyncio", "datetime.now()", "time.time()", "text()"} <= used(sample)


def test_every_pure_module_named_exists():
    assert all((ROOT / module).is_file() for module in PURE), [m for m in PURE if not (ROOT / m).is_file()]
