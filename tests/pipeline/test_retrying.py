"""pipeline.retrying.RetryBudget: the back-off of an outage and the longer one of a throttled service."""

from __future__ import annotations

from pipeline import bigquery_errors as E
from pipeline.retrying import RetryBudget


class Clock:
    """A clock that moves only when the budget sleeps, so every delay is seen exactly."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _waits(seconds: float, **wait) -> list[float]:
    clock = Clock()
    budget = RetryBudget(seconds, clock=clock, sleep=clock.sleep)
    while budget.wait(**wait):
        pass
    return clock.slept


def test_an_outage_backs_off_from_half_a_second_to_ten_within_the_budget():
    slept = _waits(60)
    for n, delay in enumerate(slept[:-1]):
        assert 0.75 * min(10.0, 0.5 * 2**n) <= delay <= min(10.0, 0.5 * 2**n)
    assert sum(slept) == 60.0, "the last sleep ends with the budget, never past it"


def test_a_throttled_service_backs_off_from_one_second_to_thirty_two():
    slept = _waits(300, initial=E.THROTTLED_INITIAL_S, cap=E.THROTTLED_CAP_S)
    for n, delay in enumerate(slept[:-1]):
        assert 0.75 * min(32.0, 2.0**n) <= delay <= min(32.0, 2.0**n)
    assert max(slept) > 10.0, "longer than an outage's cap"
    assert sum(slept) == 300.0


def test_a_spent_budget_does_not_sleep():
    clock = Clock()
    budget = RetryBudget(0, clock=clock, sleep=clock.sleep)
    assert budget.wait(initial=1, cap=32) is False and clock.slept == []
