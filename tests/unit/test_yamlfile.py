"""Configuration files are read with libyaml's safe loader: the same data as `yaml.safe_load`, the same refusals."""

import pytest
import yaml

from services.dispatch.routing import DEFAULT_ROUTING
from services.runtime.yamlfile import yaml_mapping
from services.triage.ruleset import DEFAULT_RULES


@pytest.mark.parametrize("path", [DEFAULT_RULES, DEFAULT_ROUTING], ids=lambda p: p.name)
def test_the_shipped_files_read_as_the_pure_python_safe_loader_reads_them(path):
    text = path.read_text(encoding="utf-8")
    assert yaml_mapping(text) == yaml.safe_load(text)


@pytest.mark.parametrize(("text", "error"), [
    ("!!python/object/apply:os.system ['touch pwned']", "not valid YAML"),
    ("a: !!python/name:os.system", "not valid YAML"),
    ("key: [unclosed", "not valid YAML"),
    ("- a list", "top level must be a mapping"),
    ("just text", "top level must be a mapping"),
])
def test_tags_that_build_objects_and_non_mappings_are_refused(text, error):
    with pytest.raises(ValueError, match=error):
        yaml_mapping(text)
