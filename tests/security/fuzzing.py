"""What every fuzz target shares: the hypothesis settings and the run of one check over generated examples.

By default a target runs a modest, derandomized number of examples (so `make test` repeats itself); with
`--run-slow` thousands, freshly random. Each example has a 20 s deadline, so a hang fails instead of stalling.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis.strategies import SearchStrategy

DEADLINE = timedelta(seconds=20)


def fuzz_settings(examples: int, derandomize: bool, *more_checks: HealthCheck) -> settings:
    """Settings for `examples` examples; `more_checks` are further health checks to suppress."""
    return settings(
        max_examples=examples,
        deadline=DEADLINE,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, *more_checks],
        database=None,
        derandomize=derandomize,
    )


def run_examples(examples: int, strategy: SearchStrategy, check: Callable[[Any], None], derandomize: bool) -> None:
    """Run `check(example)` on `examples` examples drawn from `strategy`."""

    @fuzz_settings(examples, derandomize)
    @given(strategy)
    def run(example: Any) -> None:
        check(example)

    run()
