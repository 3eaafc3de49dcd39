"""PIN hashes: versioned, salted, peppered; dummy checks cost like real ones."""

from __future__ import annotations

import hashlib
import time

import pytest
import sqlalchemy as sa
from gevent_worker import ticks_during

from services.accounts import security
from services.accounts.security import N, P, R, check_pin, dummy_check, hash_pin
from services.accounts.store import AccountStore

PEPPER = "test-pepper"
# A PIN hash stored by an earlier version (OpenSSL's scrypt, `hashlib.scrypt`): PIN 135790,
# salt 00 01 .. 0f. Stored hashes must go on verifying whichever library computes scrypt.
STORED = ("s1$000102030405060708090a0b0c0d0e0f$"
          "2d5c8f1e61e5f23f6155ea86c04abc4da94f08ed9fc3164554682ae69b1f46db")  # fmt: skip


def test_round_trip_and_wrong_pin() -> None:
    stored = hash_pin(PEPPER, "135790")
    assert check_pin(PEPPER, "135790", stored)
    assert not check_pin(PEPPER, "135791", stored)
    assert not check_pin(PEPPER, "", stored)


@pytest.mark.parametrize("name", sorted(security.IMPLEMENTATIONS))
def test_hashes_stored_before_still_verify_whichever_scrypt_is_faster(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(security, "fastest", lambda: name)
    assert check_pin(PEPPER, "135790", STORED)
    assert not check_pin(PEPPER, "135791", STORED)
    assert check_pin(PEPPER, "246801", hash_pin(PEPPER, "246801"))


def test_the_faster_scrypt_is_chosen_when_an_account_store_is_made() -> None:
    """Not on a caller's first PIN check: the timing takes some 12 ms."""
    security.fastest.cache_clear()
    AccountStore(sa.create_engine("sqlite://"), PEPPER)
    assert security.fastest.cache_info().currsize == 1
    assert security.fastest() in security.IMPLEMENTATIONS


def test_new_hashes_are_standard_scrypt() -> None:
    stored = hash_pin(PEPPER, "246801")
    _, salt, digest = stored.split("$")
    salted = PEPPER.encode() + bytes.fromhex(salt)
    expected = hashlib.scrypt(b"246801", salt=salted, n=N, r=R, p=P, dklen=32)
    assert digest == expected.hex()


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


def test_in_a_gevent_worker_the_other_webhooks_go_on_while_a_pin_is_hashed() -> None:
    """The hash runs in one of gevent's native threads, not in the loop: a worker's other
    webhooks are answered during its 1.5 ms, not after it. Computed in the loop's thread, no
    tick would fall within any check."""
    _, during = ticks_during("""
        from services.accounts.security import check_pin, hash_pin
        stored = hash_pin("pepper", "135790")
        def work():
            during = []
            for pin in ["135790", "135791"] * 10:
                before = ticks
                assert check_pin("pepper", pin, stored) == (pin == "135790")
                during.append(ticks - before)
            return during
    """)
    assert len(during) == 20
    assert sum(1 for ticks in during if int(ticks) > 0) >= 18, during
