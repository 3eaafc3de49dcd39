"""The account service's circuit breaker, on its own with a clock the test turns."""

from __future__ import annotations

import pytest

from services.accounts.breaker import CircuitBreaker
from services.accounts.errors import AccountsUnavailable, CircuitOpen, NotFound


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Service:
    """A stand-in for the remote service: answers, or fails, and counts what reached it."""

    def __init__(self) -> None:
        self.up = True
        self.asked = 0

    def __call__(self) -> str:
        self.asked += 1
        if not self.up:
            raise AccountsUnavailable("account service answered 500")
        return "answer"


@pytest.fixture
def clock() -> Clock:
    return Clock()


def fail(breaker: CircuitBreaker, service: Service) -> type[Exception]:
    with pytest.raises(AccountsUnavailable) as raised:
        breaker.call(service)
    return raised.type


def test_failures_in_a_row_open_it_and_then_nothing_reaches_the_service(clock: Clock) -> None:
    breaker, service = CircuitBreaker(3, 10.0, clock), Service()
    service.up = False
    assert [fail(breaker, service) for _ in range(3)] == [AccountsUnavailable] * 3
    assert breaker.state == "open" and service.asked == 3
    for _ in range(20):
        assert fail(breaker, service) is CircuitOpen
    assert service.asked == 3


def test_after_the_cool_down_one_trial_call_closes_it_when_it_succeeds(clock: Clock) -> None:
    breaker, service = CircuitBreaker(2, 10.0, clock), Service()
    service.up = False
    fail(breaker, service), fail(breaker, service)
    clock.now += 9.9
    assert fail(breaker, service) is CircuitOpen
    clock.now += 0.2
    service.up = True
    assert breaker.call(service) == "answer" and breaker.state == "closed"
    assert service.asked == 3


def test_a_failed_trial_opens_it_for_another_cool_down(clock: Clock) -> None:
    breaker, service = CircuitBreaker(2, 10.0, clock), Service()
    service.up = False
    fail(breaker, service), fail(breaker, service)
    clock.now += 10.1
    assert fail(breaker, service) is AccountsUnavailable  # the trial, which failed
    assert service.asked == 3 and breaker.state == "open"
    clock.now += 5
    assert fail(breaker, service) is CircuitOpen
    assert service.asked == 3


def test_while_a_trial_is_under_way_other_calls_still_fail_fast(clock: Clock) -> None:
    breaker, service = CircuitBreaker(1, 10.0, clock), Service()
    service.up = False
    fail(breaker, service)
    clock.now += 11
    seen: list[type[Exception]] = []

    def trial() -> str:
        seen.append(fail(breaker, service))  # a second call while the trial runs
        return "answer"

    assert breaker.call(trial) == "answer"
    assert seen == [CircuitOpen] and breaker.state == "closed"


def test_a_success_or_a_not_found_starts_the_count_again(clock: Clock) -> None:
    breaker, service = CircuitBreaker(3, 10.0, clock), Service()
    service.up = False
    fail(breaker, service), fail(breaker, service)
    service.up = True
    breaker.call(service)
    service.up = False
    fail(breaker, service), fail(breaker, service)

    def not_found() -> str:
        raise NotFound("no such account")

    with pytest.raises(NotFound):
        breaker.call(not_found)  # the service answered: it is up
    fail(breaker, service), fail(breaker, service)
    assert breaker.state == "closed"


def test_zero_failures_turns_it_off(clock: Clock) -> None:
    breaker, service = CircuitBreaker(0, 10.0, clock), Service()
    service.up = False
    assert [fail(breaker, service) for _ in range(10)] == [AccountsUnavailable] * 10
    assert service.asked == 10
