"""The release this tree is, for /health, `civicrealtime_build_info` and the CLI.

Kept in the source rather than read from the installed package's metadata, so that a
checkout run with PYTHONPATH=src (the tests, `nox -s serve`) reports the same version as
the wheel. tests/test_metrics.py checks it against pyproject.toml.
"""

from __future__ import annotations

__version__ = "0.1.0"
