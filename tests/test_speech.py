"""Tests for ivr.speech: amounts, numbers, dates and times in words."""

from __future__ import annotations

import datetime
import itertools
from decimal import Decimal

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ivr import speech

TODAY = datetime.date(2026, 11, 23)

# --- an independent reader: Chinese numeral words -> value -----------------------
#
# It reads each digit with its absolute place (exponent of ten) and whether a 零
# was spoken before it, then checks the zero rule positionally: 零 is said before
# a digit iff a zero place lies between it and the digit before *inside its own
# 4-digit group*, or a whole 4-digit group between them is empty.

_DIGIT_VALUES = {c: i for i, c in enumerate("零一二三四五六七八九")}
_SMALL_UNITS = {"十": 1, "百": 2, "千": 3}
_BIG_UNITS = {"万": 4, "亿": 8}
ALLOWED = set("零一二三四五六七八九十百千万亿元角分整")

Term = tuple[int, int, bool]  # (digit 1-9, exponent, 零 spoken before it)


def read_cn_integer(text: str) -> tuple[int, list[Term]]:
    """Value and digit terms of a Chinese numeral; asserts it is well formed."""
    assert text, "empty numeral"
    if text == "零":
        return 0, []
    closed: list[Term] = []  # terms already multiplied by every big unit after them
    open_terms: list[Term] = []  # terms since the last big unit
    digit: int | None = None
    zero = False
    for i, char in enumerate(text):
        if char == "零":
            assert digit is None and not zero, f"misplaced 零 in {text!r}"
            zero = True
        elif char in _DIGIT_VALUES:
            assert digit is None, f"two digits in a row in {text!r}"
            digit = _DIGIT_VALUES[char]
        elif char in _SMALL_UNITS:
            if digit is None:
                assert i == 0 and char == "十", f"unit without a digit in {text!r}"
                digit = 1
            open_terms.append((digit, _SMALL_UNITS[char], zero))
            digit, zero = None, False
        elif char in _BIG_UNITS:
            assert text[i - 1] != "零", f"零 before {char} in {text!r}"
            if digit is not None:
                open_terms.append((digit, 0, zero))
                digit, zero = None, False
            assert open_terms, f"{char} with nothing before it in {text!r}"
            shift = _BIG_UNITS[char]
            below = [t for t in closed if t[1] < shift]
            above = [t for t in closed if t[1] >= shift]
            closed = above + [(d, e + shift, z) for d, e, z in below + open_terms]
            open_terms = []
        else:
            raise AssertionError(f"unexpected {char!r} in {text!r}")
    assert not text.endswith("零"), f"trailing 零 in {text!r}"
    if digit is not None:
        open_terms.append((digit, 0, zero))
    terms = closed + open_terms
    exponents = [e for _, e, _ in terms]
    assert exponents == sorted(set(exponents), reverse=True), f"places out of order: {text!r}"
    return sum(d * 10**e for d, e, _ in terms), terms


def check_zeros(text: str, terms: list[Term]) -> None:
    """Assert 零 is spoken exactly where the banking reading needs it."""
    if terms:
        assert not terms[0][2], f"leading 零 in {text!r}"
    for (_, high, _), (_, low, zero) in itertools.pairwise(terms):
        gap_in_group = any(p // 4 == low // 4 for p in range(low + 1, high))
        empty_group = high // 4 - low // 4 >= 2
        assert zero == (gap_in_group or empty_group), f"wrong 零 before 10^{low} in {text!r}"


def parse_cn_integer(text: str) -> int:
    """Value of a well-formed Chinese numeral with correct zeros."""
    value, terms = read_cn_integer(text)
    check_zeros(text, terms)
    return value


def parse_cn_money(text: str) -> Decimal:
    """Value of a Mandarin amount such as 负一千零五元零七分 or 五角; asserts its form."""
    sign = 1
    if text.startswith("负"):
        sign, text = -1, text[1:]
    if text == "零元":
        assert sign == 1, "负零元"
        return Decimal(0)
    yuan = 0
    if "元" in text:
        yuan_text, text = text.split("元")
        yuan = parse_cn_integer(yuan_text)
        assert yuan > 0, f"零 yuan spoken with a fraction: {text!r}"
    if text == "整":
        assert yuan > 0
        return sign * Decimal(yuan)
    zero = text.startswith("零")
    text = text.removeprefix("零")
    jiao = fen = 0
    if "角" in text:
        jiao_text, text = text.split("角")
        assert len(jiao_text) == 1, f"bad 角 in {text!r}"
        jiao = _DIGIT_VALUES[jiao_text]
        assert jiao > 0
    if "分" in text:
        fen_text, text = text.split("分")
        assert len(fen_text) == 1, f"bad 分 in {text!r}"
        fen = _DIGIT_VALUES[fen_text]
        assert fen > 0
    assert text == "", f"left over {text!r}"
    assert jiao or fen, "a yuan amount without 整 or a fraction"
    assert zero == (yuan > 0 and jiao == 0), "零 between 元 and 分 is wrong"
    return sign * (Decimal(yuan) + Decimal(jiao) / 10 + Decimal(fen) / 100)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("一千零五元零七分", Decimal("1005.07")),
        ("十万零五元整", Decimal(100005)),
        ("一亿零一千元整", Decimal(100001000)),
        ("十万一千元整", Decimal(101000)),
        ("五角", Decimal("0.5")),
        ("零元", Decimal(0)),
    ],
)
def test_reader_reads_good_text(text: str, value: Decimal) -> None:
    assert parse_cn_money(text) == value


@pytest.mark.parametrize(
    "text",
    [
        "一千五元七分",
        "一千零五元七分",
        "十万五元整",
        "十万零一千元整",
        "一亿一千元整",
        "一千零零五元整",
        "一千零元整",
        "零五角",
        "零元五角",
        "十元",
        "五角整",
        "一百十元整",
        "五十元零三角",
    ],
)
def test_reader_rejects_bad_zeros(text: str) -> None:
    with pytest.raises(AssertionError):
        parse_cn_money(text)


# --- money ---------------------------------------------------------------------

CMN_MONEY = [
    # the examples in the brief and SPEC §6
    ("1234.56", "一千二百三十四元五角六分"),
    ("1005.07", "一千零五元零七分"),
    ("100.00", "一百元整"),
    ("0.00", "零元"),
    ("0.05", "五分"),
    ("0.50", "五角"),
    ("0.56", "五角六分"),
    ("10.00", "十元整"),
    ("15.00", "十五元整"),
    ("110.00", "一百一十元整"),
    ("10000", "一万元整"),
    ("100005", "十万零五元整"),
    ("1000000.10", "一百万元一角"),
    ("20.30", "二十元三角"),
    ("12.05", "十二元零五分"),
    ("10010", "一万零一十元整"),
    ("100100", "十万零一百元整"),
    ("1000100", "一百万零一百元整"),
    ("101000", "十万一千元整"),
    # zero and boundary cases
    ("0.01", "一分"),
    ("0.10", "一角"),
    ("1.00", "一元整"),
    ("1000.00", "一千元整"),
    ("10000.00", "一万元整"),
    ("100000000.00", "一亿元整"),
    ("99999999999.99", "九百九十九亿九千九百九十九万九千九百九十九元九角九分"),
    ("1001", "一千零一元整"),
    ("1010", "一千零一十元整"),
    ("1100", "一千一百元整"),
    ("10001", "一万零一元整"),
    ("10100", "一万零一百元整"),
    ("110000", "十一万元整"),
    ("100010", "十万零一十元整"),
    ("100000001", "一亿零一元整"),
    ("100001000", "一亿零一千元整"),
    ("100010000", "一亿零一万元整"),
    ("1001000000", "十亿零一百万元整"),
    ("10000000000", "一百亿元整"),
    ("2.22", "二元二角二分"),
    ("200000", "二十万元整"),
    ("0.5", "五角"),
    ("7", "七元整"),
    # negatives
    ("-5.00", "负五元整"),
    ("-0.50", "负五角"),
    ("-1005.07", "负一千零五元零七分"),
    ("-0.00", "零元"),
]


@pytest.mark.parametrize(("amount", "expected"), CMN_MONEY)
def test_money_cmn(amount: str, expected: str) -> None:
    assert speech.money(amount, "cmn-CN") == expected
    assert speech.money(Decimal(amount), "cmn-CN") == expected


EN_MONEY = [
    ("1234.56", "1,234.56 yuan"),
    ("100.00", "100.00 yuan"),
    ("0.50", "0.50 yuan"),
    ("0.5", "0.50 yuan"),
    ("-5.00", "-5.00 yuan"),
    ("-0.00", "0.00 yuan"),
    ("0.00", "0.00 yuan"),
    ("999.99", "999.99 yuan"),
    ("1000", "1,000.00 yuan"),
    ("1000000.10", "1,000,000.10 yuan"),
    ("99999999999.99", "99,999,999,999.99 yuan"),
]


@pytest.mark.parametrize(("amount", "expected"), EN_MONEY)
def test_money_en(amount: str, expected: str) -> None:
    assert speech.money(amount, "en-US") == expected
    assert speech.money(Decimal(amount), "en-US") == expected


def test_money_accepts_decimal_with_trailing_zeros_or_exponent() -> None:
    assert speech.money(Decimal("12.500"), "cmn-CN") == "十二元五角"
    assert speech.money(Decimal("1E+2"), "cmn-CN") == "一百元整"


@pytest.mark.parametrize("amount", [1.5, 1, True, None, b"1.00"])
def test_money_refuses_non_decimal_types(amount: object) -> None:
    with pytest.raises(TypeError, match="Decimal"):
        speech.money(amount, "cmn-CN")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "amount",
    [
        "",
        "abc",
        "1.2.3",
        " 1.00",
        "1.00 ",
        "+1.00",
        "1e3",
        "NaN",
        "Infinity",
        "1,000.00",
        "1.",
        ".5",
        "1.005",
        "１２",
    ],
)
def test_money_refuses_malformed_strings(amount: str) -> None:
    with pytest.raises(ValueError, match="malformed amount"):
        speech.money(amount, "cmn-CN")


@pytest.mark.parametrize(
    "amount", [Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity"), Decimal("1.005")]
)
def test_money_refuses_malformed_decimals(amount: Decimal) -> None:
    with pytest.raises(ValueError, match="malformed amount"):
        speech.money(amount, "en-US")


@pytest.mark.parametrize("amount", ["100000000000.00", "-100000000000", Decimal("1E+40")])
def test_money_refuses_amounts_out_of_range(amount: Decimal | str) -> None:
    with pytest.raises(ValueError, match="out of range"):
        speech.money(amount, "cmn-CN")


@pytest.mark.parametrize("lang", ["zh-CN", "en", "", "EN-US"])
def test_unsupported_language(lang: str) -> None:
    with pytest.raises(ValueError, match="unsupported language"):
        speech.money("1.00", lang)
    with pytest.raises(ValueError, match="unsupported language"):
        speech.integer(1, lang)
    with pytest.raises(ValueError, match="unsupported language"):
        speech.date(TODAY, lang, TODAY)
    with pytest.raises(ValueError, match="unsupported language"):
        speech.time_of_day(datetime.time(10, 15), lang)
    with pytest.raises(ValueError, match="unsupported language"):
        speech.month("2026-10", lang, TODAY)
    with pytest.raises(ValueError, match="unsupported language"):
        speech.digits("1234", lang)


# --- integer -------------------------------------------------------------------

CMN_INTEGERS = [
    (0, "零"),
    (1, "一"),
    (2, "二"),
    (10, "十"),
    (11, "十一"),
    (15, "十五"),
    (20, "二十"),
    (100, "一百"),
    (101, "一百零一"),
    (110, "一百一十"),
    (1001, "一千零一"),
    (1010, "一千零一十"),
    (1100, "一千一百"),
    (10001, "一万零一"),
    (10010, "一万零一十"),
    (10100, "一万零一百"),
    (110000, "十一万"),
    (100000000, "一亿"),
    (222222222, "二亿二千二百二十二万二千二百二十二"),
    (999999999999, "九千九百九十九亿九千九百九十九万九千九百九十九"),
    (-3, "负三"),
    (-10, "负十"),
]


@pytest.mark.parametrize(("n", "expected"), CMN_INTEGERS)
def test_integer_cmn(n: int, expected: str) -> None:
    assert speech.integer(n, "cmn-CN") == expected


@pytest.mark.parametrize(
    ("n", "expected"),
    [(0, "0"), (3, "3"), (999, "999"), (1000, "1,000"), (1234567, "1,234,567"), (-1000, "-1,000")],
)
def test_integer_en(n: int, expected: str) -> None:
    assert speech.integer(n, "en-US") == expected


def test_integer_refuses_out_of_range_and_non_int() -> None:
    with pytest.raises(ValueError, match="out of range"):
        speech.integer(10**12, "cmn-CN")
    with pytest.raises(TypeError):
        speech.integer(1.0, "cmn-CN")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        speech.integer(True, "cmn-CN")


# --- dates, times, months, digits ------------------------------------------------


@pytest.mark.parametrize(
    ("d", "lang", "expected"),
    [
        (datetime.date(2026, 11, 20), "cmn-CN", "11月20日"),
        (datetime.date(2025, 11, 20), "cmn-CN", "2025年11月20日"),
        (datetime.date(2027, 1, 5), "cmn-CN", "2027年1月5日"),
        (datetime.date(2026, 3, 1), "cmn-CN", "3月1日"),
        (datetime.date(2026, 11, 20), "en-US", "November 20"),
        (datetime.date(2025, 11, 20), "en-US", "November 20, 2025"),
        (datetime.date(2026, 1, 5), "en-US", "January 5"),
        (datetime.datetime(2026, 11, 20, 10, 15), "cmn-CN", "11月20日"),
        (datetime.datetime(2025, 12, 31, 23, 59), "en-US", "December 31, 2025"),
    ],
)
def test_date(d: datetime.date, lang: str, expected: str) -> None:
    assert speech.date(d, lang, TODAY) == expected


@pytest.mark.parametrize(
    ("t", "cmn", "en"),
    [
        (datetime.time(10, 15), "10点15分", "10:15 AM"),
        (datetime.time(15, 5), "15点05分", "3:05 PM"),
        (datetime.time(10, 0), "10点整", "10:00 AM"),
        (datetime.time(0, 0), "0点整", "12:00 AM"),
        (datetime.time(0, 30), "0点30分", "12:30 AM"),
        (datetime.time(12, 0), "12点整", "12:00 PM"),
        (datetime.time(23, 59, 59), "23点59分", "11:59 PM"),
        (datetime.datetime(2026, 11, 20, 10, 15), "10点15分", "10:15 AM"),
    ],
)
def test_time_of_day(t: datetime.time, cmn: str, en: str) -> None:
    assert speech.time_of_day(t, "cmn-CN") == cmn
    assert speech.time_of_day(t, "en-US") == en


@pytest.mark.parametrize(
    ("ym", "cmn", "en"),
    [
        ("2026-10", "2026年10月", "October 2026"),
        ("2026-11", "2026年11月", "November 2026"),
        ("2025-01", "2025年1月", "January 2025"),
    ],
)
def test_month_always_has_the_year(ym: str, cmn: str, en: str) -> None:
    assert speech.month(ym, "cmn-CN", TODAY) == cmn
    assert speech.month(ym, "en-US", TODAY) == en


@pytest.mark.parametrize("ym", ["2026-13", "2026-00", "2026-1", "202610", "2026-10-01", ""])
def test_month_refuses_malformed(ym: str) -> None:
    with pytest.raises(ValueError, match="malformed month"):
        speech.month(ym, "cmn-CN", TODAY)


@pytest.mark.parametrize("lang", speech.LANGS)
def test_digits(lang: str) -> None:
    assert speech.digits("1234", lang) == "1 2 3 4"
    assert speech.digits("0", lang) == "0"
    assert speech.digits("0012", lang) == "0 0 1 2"


@pytest.mark.parametrize("s", ["", "12a4", "12 34", "１２３４", "²"])
def test_digits_refuses_non_digits(s: str) -> None:
    with pytest.raises(ValueError, match="malformed digits"):
        speech.digits(s, "cmn-CN")


def test_langs() -> None:
    assert speech.LANGS == ("cmn-CN", "en-US")


# --- properties ------------------------------------------------------------------

_zero_heavy_cents = st.lists(st.sampled_from("0000000123456789"), min_size=1, max_size=13).map(
    lambda ds: int("".join(ds))
)

amounts = st.one_of(
    st.decimals(
        min_value=Decimal(0),
        max_value=speech.MAX_AMOUNT,
        places=2,
        allow_nan=False,
        allow_infinity=False,
    ),
    _zero_heavy_cents.map(lambda c: Decimal(c).scaleb(-2)),
)


def _check_cmn_shape(text: str) -> None:
    if text in ("零", "零元"):
        return
    assert set(text) <= ALLOWED, text
    assert "零零" not in text, text
    assert not text.startswith("零") and not text.endswith("零"), text
    assert "两" not in text, text
    assert not text.startswith("一十"), text
    for unit in "十百千万亿元角分":
        assert "零" + unit not in text, text


@settings(database=None, max_examples=500)
@given(amounts)
@example(Decimal("0.00"))
@example(Decimal("99999999999.99"))
@example(Decimal("10010.01"))
def test_money_cmn_round_trips(amount: Decimal) -> None:
    text = speech.money(amount, "cmn-CN")
    _check_cmn_shape(text)
    assert parse_cn_money(text) == amount


@settings(database=None, max_examples=200)
@given(amounts.filter(lambda a: a != 0))
def test_money_cmn_negative_round_trips(amount: Decimal) -> None:
    text = speech.money(-amount, "cmn-CN")
    assert text.startswith("负")
    _check_cmn_shape(text[1:])
    assert parse_cn_money(text) == -amount


@settings(database=None, max_examples=300)
@given(amounts)
def test_money_en_round_trips(amount: Decimal) -> None:
    text = speech.money(amount, "en-US")
    number, unit = text.split(" ")
    assert unit == "yuan"
    whole, _, cents = number.partition(".")
    assert len(cents) == 2
    groups = whole.split(",")
    assert 1 <= len(groups[0]) <= 3 and all(len(g) == 3 for g in groups[1:]), text
    assert Decimal(number.replace(",", "")) == amount


@settings(database=None, max_examples=300)
@given(
    st.one_of(
        st.integers(min_value=0, max_value=10**12 - 1),
        st.lists(st.sampled_from("0000000123456789"), min_size=1, max_size=12).map(
            lambda ds: int("".join(ds))
        ),
    )
)
def test_integer_cmn_round_trips(n: int) -> None:
    text = speech.integer(n, "cmn-CN")
    _check_cmn_shape(text)
    assert parse_cn_integer(text) == n
