"""How many examples a fuzz run may try: small in CI, large for a maintainer's run.

`CIVICREALTIME_FUZZ_EXAMPLES` sets it (`nox -s fuzz -- 10000`, see docs/fuzzing.md);
`CIVICREALTIME_FUZZ_STEPS` sets the length of the state machine's programs.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

DEFAULT_EXAMPLES = 25
# Rules per state-machine run (`CIVICREALTIME_FUZZ_STEPS`): short programs shrink fast.
DEFAULT_STEPS = 15


def examples() -> int:
    return int(os.environ.get("CIVICREALTIME_FUZZ_EXAMPLES", DEFAULT_EXAMPLES))


def steps() -> int:
    return int(os.environ.get("CIVICREALTIME_FUZZ_STEPS", DEFAULT_STEPS))


def fuzz_settings(scale: float = 1.0) -> settings:
    return settings(
        max_examples=max(1, int(examples() * scale)),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        print_blob=True,
    )
