"""PIN hashes: versioned, salted, peppered; dummy checks cost like real ones."""

from __future__ import annotations

import time

from services.accounts.security import check_pin, dummy_check, hash_pin

PEPPER = "test-pepper"


def test_round_trip_and_wrong_pin() -> None:
    stored = hash_pin(PEPPER, "135790")
    assert check_pin(PEPPER, "135790", stored)
    assert not check_pin(PEPPER, "135791", stored)
    assert not check_pin(PEPPER, "", stored)


def test_format_is_versioned_salted_and_holds_no_pin() -> None:
    first, second = hash_pin(PEPPER, "135790"), hash_pin(PEPPER, "135790")
    scheme, salt, digest = first.split("$")
    assert scheme == "s1" and len(salt) == 32 and len(digest) == 64
    assert first != second  # a new salt each time
    assert "135790" not in first


def test_pepper_matters() -> None:
    assert not check_pin("other-pepper", "135790", hash_pin(PEPPER, "135790"))


def test_malformed_or_unknown_scheme_is_false() -> None:
    stored = hash_pin(PEPPER, "135790")
    for bad in ["", "garbage", "s2" + stored[2:], stored.replace("$", "$zz", 1)]:
        assert not check_pin(PEPPER, "135790", bad)


def test_dummy_check_costs_about_what_a_real_check_costs() -> None:
    stored = hash_pin(PEPPER, "135790")

    def best_of(run: object) -> float:
        assert callable(run)
        times = []
        for _ in range(15):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        return min(times)

    real = best_of(lambda: check_pin(PEPPER, "000000", stored))
    dummy = best_of(lambda: dummy_check(PEPPER))
    assert 0.5 < dummy / real < 2.0
