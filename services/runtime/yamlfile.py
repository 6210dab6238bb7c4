"""Reading configuration files: YAML's safe subset only (no tags that build objects), a mapping at the top."""

from typing import Any

import yaml


def yaml_mapping(text: str) -> dict[str, Any]:
    """Parse a YAML document that must be a mapping; raise ValueError otherwise."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ValueError(f"not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise ValueError("top level must be a mapping")
    return raw
