"""The browser tests' marker (pyproject's --strict-markers needs it registered)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "e2e: drives the demo page in headless Chromium (needs Node.js and Chromium)"
    )
