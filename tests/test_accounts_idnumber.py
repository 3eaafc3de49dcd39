"""ID numbers: GB 11643 check characters, birth dates, normalisation, masks and digests."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.accounts.idnumber import check_char, digest, is_valid, mask, normalize

SAMPLE = "11010519491231002X"


def test_public_sample_is_valid() -> None:
    assert is_valid(SAMPLE)
    assert check_char(SAMPLE[:17]) == "X"


@pytest.mark.parametrize("wrong", sorted(set("0123456789X") - {"X"}))
def test_every_other_check_character_is_invalid(wrong: str) -> None:
    assert not is_valid(SAMPLE[:17] + wrong)


def test_lowercase_x_and_star_normalise_to_x() -> None:
    assert normalize(" 11010519491231002x ") == SAMPLE
    assert normalize("11010519491231002*") == SAMPLE
    assert is_valid("11010519491231002x")
    assert is_valid("11010519491231002*")


@pytest.mark.parametrize(
    "first17",
    [
        "11010519490230002",  # 30 February
        "11010519491301002",  # month 13
        "11010518991231002",  # year 1899
        "11010521010101002",  # year 2101
        "11010519490000002",  # month 0
    ],
)
def test_impossible_birth_dates_are_invalid_even_with_the_right_check(first17: str) -> None:
    assert not is_valid(first17 + check_char(first17))


@pytest.mark.parametrize(
    "value",
    ["", SAMPLE[:17], SAMPLE + "0", "A1010519491231002X", "１１０１０５１９４９１２３１００２X"],
)
def test_wrong_shapes_are_invalid(value: str) -> None:
    assert not is_valid(value)


_birth = st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 12, 31))


@given(
    region=st.from_regex(r"[0-9]{6}", fullmatch=True),
    born=_birth,
    serial=st.from_regex(r"[0-9]{3}", fullmatch=True),
)
def test_computed_check_character_is_the_only_valid_one(
    region: str, born: date, serial: str
) -> None:
    first17 = f"{region}{born:%Y%m%d}{serial}"
    right = check_char(first17)
    assert is_valid(first17 + right)
    assert all(not is_valid(first17 + c) for c in "0123456789X" if c != right)


def test_mask_keeps_first_3_and_last_4() -> None:
    assert mask(SAMPLE) == "110***********002X"
    assert mask("11010519491231002x") == "110***********002X"
    assert mask("12345678") == "123*5678"
    assert mask("1234567") == "*******"
    assert mask("") == ""


def test_digest_is_stable_normalised_and_pepper_dependent() -> None:
    value = digest("pepper-a", SAMPLE)
    assert value == digest("pepper-a", "11010519491231002x") == digest("pepper-a", SAMPLE)
    assert len(value) == 64 and int(value, 16) >= 0
    assert value != digest("pepper-b", SAMPLE)
    assert SAMPLE not in value and SAMPLE.lower() not in value
