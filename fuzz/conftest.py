"""The fuzz tests share the test suite's fixtures (a real server on a loopback port)."""

from tests.conftest import make_config, server, start_server  # noqa: F401
