"""Reading configuration files: YAML's safe subset only (no tags that build objects), a mapping at the top."""

from typing import Any

import yaml

# libyaml's parser behind the same safe constructor: the pure-Python one took 54 ms for the default
# rules file, paid at every start, reload and in-process pipeline. PyYAML wheels ship it; the fallback
# keeps a build without libyaml working.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def yaml_mapping(text: str) -> dict[str, Any]:
    """Parse a YAML document that must be a mapping; raise ValueError otherwise."""
    try:
        raw = yaml.load(text, Loader=_SAFE_LOADER)  # noqa: S506 - a safe loader, the C build of yaml.safe_load's
    except yaml.YAMLError as error:
        raise ValueError(f"not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise ValueError("top level must be a mapping")
    return raw
