"""The official AsyncAPI parser accepts every committed AsyncAPI document with no error diagnostic."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from schemas.generate import ASYNCAPI_DIR

TOOLS = Path(__file__).parents[2] / "tools" / "asyncapi"
NODE = shutil.which("node")
DOCUMENTS = sorted(ASYNCAPI_DIR.glob("*.json"))


def _diagnostics(paths: list[Path]) -> tuple[int, list[dict]]:
    assert NODE, "node is missing: `make test` installs it with the parser"
    assert (TOOLS / "node_modules" / "@asyncapi" / "parser").is_dir(), "the AsyncAPI parser is missing: run `make asyncapi`"
    run = subprocess.run([NODE, str(TOOLS / "validate.mjs"), *map(str, paths)], capture_output=True, text=True, timeout=120)
    assert not run.stderr.strip(), run.stderr
    return run.returncode, [json.loads(line) for line in run.stdout.splitlines()]


def test_the_parser_finds_no_error_in_any_document():
    code, diagnostics = _diagnostics(DOCUMENTS)
    errors = [d for d in diagnostics if d["severity"] == "Error"]
    assert (code, errors) == (0, []), json.dumps(errors, indent=1)
    assert len(DOCUMENTS) == 3


# (case, how to break a sound document): the check must fail on each, or it proves nothing.
BROKEN = [
    ("dangling message $ref", lambda d: d["channels"]["disputes_reported"]["messages"]["DisputeReported"].update({"$ref": "#/components/messages/Nope"})),
    ("key schema of an unknown type", lambda d: d["components"]["messages"]["DeadLetter"]["bindings"]["kafka"]["key"].update({"type": "text"})),
    ("parameter enum not a list", lambda d: d["components"]["parameters"].update({"department": {"enum": "court"}})),
]


@pytest.mark.parametrize("case, breaks", BROKEN, ids=[c for c, _ in BROKEN])
def test_the_check_fails_on_a_broken_document(case, breaks, tmp_path):
    document = json.loads((ASYNCAPI_DIR / "triage.json").read_text())
    document["components"].setdefault("parameters", {"department": {"enum": ["court"]}})
    breaks(document)
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(document))
    code, diagnostics = _diagnostics([path])
    assert code == 1 and any(d["severity"] == "Error" for d in diagnostics), diagnostics
