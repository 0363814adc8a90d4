"""Settings shared by tests/ and fuzz/.

Hypothesis: no per-example deadline and no "too slow" health check. Both measure wall
time, which on a shared two-core CI machine says more about its neighbours than about our
code; speed is measured by the benchmarks, not asserted by tests.
"""

from hypothesis import HealthCheck, settings

settings.register_profile(
    "civicrealtime",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("civicrealtime")
