"""The release number, in one place: pyproject.toml reads it, `--version` prints it."""

VERSION = "0.2.0"
