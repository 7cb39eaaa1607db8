"""Backoff: exponential growth with jitter, a cap, Retry-After, and once-per-outage signals."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from feeds.backoff import Backoff

T0 = datetime(2026, 1, 6, 12, 0, tzinfo=UTC)


def seconds_until(backoff: Backoff, now: datetime) -> float:
    assert backoff.retry_at is not None
    return (backoff.retry_at - now).total_seconds()


def test_fresh_backoff_is_ready() -> None:
    backoff = Backoff()
    assert backoff.ready(T0)
    assert backoff.failures == 0
    assert backoff.retry_at is None
    assert not backoff.in_outage


@pytest.mark.parametrize(
    ("failures", "nominal"),
    [(0, 0.0), (1, 1.0), (2, 2.0), (3, 4.0), (9, 256.0), (10, 300.0), (1000, 300.0)],
)
def test_nominal_delay_doubles_up_to_the_cap(failures: int, nominal: float) -> None:
    assert Backoff(base=1.0, cap=300.0).delay(failures) == nominal


@given(st.integers(min_value=1, max_value=40), st.integers(min_value=0, max_value=2**32))
def test_jittered_wait_is_between_half_and_all_of_the_nominal_delay(n: int, seed: int) -> None:
    backoff = Backoff(base=2.0, cap=600.0, rng=random.Random(seed))
    for _ in range(n):
        retry_at = backoff.failure(T0)
    nominal = backoff.delay(n)
    assert timedelta(seconds=nominal / 2) <= retry_at - T0 <= timedelta(seconds=nominal)


def test_waits_until_retry_time_then_is_ready() -> None:
    backoff = Backoff(base=10.0, rng=random.Random(1))
    retry_at = backoff.failure(T0)
    assert not backoff.ready(T0)
    assert not backoff.ready(retry_at - timedelta(milliseconds=1))
    assert backoff.ready(retry_at)


def test_outage_started_only_on_the_first_failure() -> None:
    backoff = Backoff(rng=random.Random(2))
    starts = []
    for i in range(4):
        backoff.failure(T0 + timedelta(minutes=i))
        starts.append(backoff.outage_started)
    assert starts == [True, False, False, False]
    assert backoff.failures == 4


def test_success_reports_the_end_of_an_outage_once() -> None:
    backoff = Backoff(rng=random.Random(3))
    assert backoff.success() is False
    backoff.failure(T0)
    backoff.failure(T0)
    assert backoff.success() is True
    assert backoff.success() is False
    assert backoff.failures == 0
    assert backoff.ready(T0)


def test_after_success_a_new_outage_starts_again_from_base() -> None:
    backoff = Backoff(base=1.0, rng=random.Random(4))
    for _ in range(5):
        backoff.failure(T0)
    backoff.success()
    backoff.failure(T0)
    assert backoff.outage_started
    assert seconds_until(backoff, T0) <= 1.0


def test_at_least_honours_retry_after() -> None:
    backoff = Backoff(base=1.0, rng=random.Random(5))
    backoff.failure(T0, at_least=30.0)
    assert seconds_until(backoff, T0) == 30.0


def test_at_least_never_shortens_the_wait() -> None:
    backoff = Backoff(base=100.0, cap=100.0, rng=random.Random(6))
    backoff.failure(T0, at_least=1.0)
    assert seconds_until(backoff, T0) >= 50.0


def test_same_seed_same_schedule() -> None:
    a, b = Backoff(rng=random.Random(7)), Backoff(rng=random.Random(7))
    assert [a.failure(T0) for _ in range(5)] == [b.failure(T0) for _ in range(5)]


@pytest.mark.parametrize(("base", "cap"), [(0.0, 10.0), (-1.0, 10.0), (10.0, 5.0)])
def test_rejects_nonsense_parameters(base: float, cap: float) -> None:
    with pytest.raises(ValueError):
        Backoff(base=base, cap=cap)
