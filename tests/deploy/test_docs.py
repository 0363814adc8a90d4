"""docs/configuration.md against the configuration classes: every key, its default."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import yaml

from civicrealtime import config as config_module
from civicrealtime import logs
from civicrealtime.auth import secrets
from civicrealtime.config import RealtimeConfig

CONFIGURATION = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def key_paths(cls: type, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, default) for every leaf key of the configuration."""
    for field in attrs.fields(attrs.resolve_types(cls)):
        default = field.default
        if isinstance(default, attrs.Factory):
            default = default.factory()
        if attrs.has(field.type):
            yield from key_paths(field.type, f"{prefix}{field.name}.")
        else:
            yield f"{prefix}{field.name}", default


def documented_rows() -> dict[str, str]:
    """Table rows of the "Keys" section, by key: {key: default cell}."""
    text = CONFIGURATION.read_text(encoding="utf-8")
    section = text[text.index("## Keys") :]
    rows = re.findall(r"^\| `([a-z_.]+)` \| ([^|]*) \|", section, re.MULTILINE)
    return {key: default.strip() for key, default in rows}


def test_every_key_is_documented_and_no_other() -> None:
    documented = documented_rows()
    actual = dict(key_paths(RealtimeConfig))
    assert set(actual) - set(documented) == set(), "keys missing from docs/configuration.md"
    assert set(documented) - set(actual) == set(), "documented keys that do not exist"


@pytest.mark.parametrize(("key", "default"), list(key_paths(RealtimeConfig)))
def test_documented_default_matches(key: str, default: Any) -> None:
    cell = documented_rows()[key]
    if isinstance(default, dict):
        return  # auth.roles: described in words
    first = re.match(r"`([^`]*)`", cell)
    assert first is not None, f"{key}: the default cell should start with `value`"
    written = yaml.safe_load(first.group(1))
    expected = list(default) if isinstance(default, tuple) else default
    assert written == expected, key


def test_every_environment_variable_is_documented() -> None:
    text = CONFIGURATION.read_text(encoding="utf-8")
    names = {
        value
        for module in (config_module, logs, secrets)
        for name, value in vars(module).items()
        if name.startswith("ENV_") and isinstance(value, str)
    }
    assert names, "no ENV_* constants found"
    missing = {name for name in names if f"| `{name}` |" not in text}
    assert missing == set()
