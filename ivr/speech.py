"""Amounts, numbers, dates and times as text a TTS voice reads well, per language.

Pure functions, no I/O. Money is ``Decimal`` (or a decimal string) only; a float
is refused with ``TypeError`` so a rounding error can never be read to a caller.
Mandarin amounts use the banking reading in 元角分 (1005.07 -> 一千零五元零七分);
English amounts use digits with thousands separators (``1,234.56 yuan``).
"""

from __future__ import annotations

import datetime
import re
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation

LANGS = ("cmn-CN", "en-US")

MAX_AMOUNT = Decimal("99999999999.99")
"""The largest amount (in absolute value) `money` reads: just under 一千亿元."""

_INTEGER_LIMIT = 10**12
"""`integer` reads Mandarin numerals below this (up to 九千九百九十九亿…)."""

_CTX = Context(prec=28, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation])
_CENT = Decimal("0.01")
_AMOUNT_TEXT = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_MONTH_TEXT = re.compile(r"([0-9]{4})-([0-9]{2})")

_CN_DIGITS = "零一二三四五六七八九"
_CN_SMALL_UNITS = ("千", "百", "十", "")
_CN_GROUP_UNITS = ("亿", "万", "")
_EN_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def _check_lang(lang: str) -> None:
    """Raise ValueError unless `lang` is one of LANGS."""
    if lang not in LANGS:
        raise ValueError(f"unsupported language {lang!r}; expected one of {', '.join(LANGS)}")


def _cn_group(group: int) -> str:
    """Read 1..9999 in Chinese numerals: one 零 per inner run of zeros, none at the end."""
    text = ""
    pending_zero = False
    for digit_char, unit in zip(f"{group:04d}", _CN_SMALL_UNITS, strict=True):
        digit = int(digit_char)
        if digit == 0:
            pending_zero = bool(text)
            continue
        if pending_zero:
            text += "零"
            pending_zero = False
        text += _CN_DIGITS[digit] + unit
    return text


def _cn_integer(n: int) -> str:
    """Read 0 <= n < 10**12 in Chinese numerals (十 not 一十 at the head; never 两)."""
    if n == 0:
        return "零"
    groups = (n // 10**8, n // 10**4 % 10**4, n % 10**4)
    text = ""
    pending_zero = False
    for group, unit in zip(groups, _CN_GROUP_UNITS, strict=True):
        if group == 0:
            pending_zero = bool(text)
            continue
        if text and (pending_zero or group < 1000):
            text += "零"
        pending_zero = False
        text += _cn_group(group) + unit
    if text.startswith("一十"):
        text = text[1:]
    return text


def _to_cents(amount: Decimal | str) -> int:
    """Validate an amount (Decimal or decimal string, at most 2 places) and return it in fen."""
    if isinstance(amount, str):
        if not _AMOUNT_TEXT.fullmatch(amount):
            raise ValueError(
                f"malformed amount {amount!r}: expected a decimal string like '1234.56'"
            )
        value = Decimal(amount)
    elif isinstance(amount, Decimal):
        value = amount
    else:
        raise TypeError(
            f"amount must be a Decimal or a decimal string, not {type(amount).__name__}"
        )
    if not value.is_finite():
        raise ValueError(f"malformed amount {amount!r}: not a finite number")
    if value.copy_abs() > MAX_AMOUNT:
        raise ValueError(f"amount {amount!r} is out of range (at most {MAX_AMOUNT} in size)")
    quantized = value.quantize(_CENT, context=_CTX)
    if quantized != value:
        raise ValueError(f"malformed amount {amount!r}: more than 2 decimal places")
    return int(quantized.scaleb(2, context=_CTX))


def money(amount: Decimal | str, lang: str) -> str:
    """Read an amount of yuan: 一千零五元零七分 in cmn-CN, ``1,005.07 yuan`` in en-US."""
    _check_lang(lang)
    cents = _to_cents(amount)
    sign = "-" if cents < 0 else ""
    yuan, fen_total = divmod(abs(cents), 100)
    if lang == "en-US":
        return f"{sign}{yuan:,}.{fen_total:02d} yuan"
    jiao, fen = divmod(fen_total, 10)
    if yuan == 0 and fen_total == 0:
        return "零元"
    text = "负" if sign else ""
    if yuan:
        text += _cn_integer(yuan) + "元"
        if fen_total == 0:
            return text + "整"
        if jiao == 0:
            text += "零"
    if jiao:
        text += _CN_DIGITS[jiao] + "角"
    if fen:
        text += _CN_DIGITS[fen] + "分"
    return text


def integer(n: int, lang: str) -> str:
    """Read a whole number: Chinese numerals in cmn-CN, digits with separators in en-US."""
    _check_lang(lang)
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"integer expects an int, not {type(n).__name__}")
    if lang == "en-US":
        return f"{n:,}"
    if abs(n) >= _INTEGER_LIMIT:
        raise ValueError(f"integer {n} is out of range for Mandarin numerals (< {_INTEGER_LIMIT})")
    return ("负" if n < 0 else "") + _cn_integer(abs(n))


def date(d: datetime.date | datetime.datetime, lang: str, today: datetime.date) -> str:
    """Read a calendar date (11月20日 / November 20), with the year if not today's year."""
    _check_lang(lang)
    with_year = d.year != today.year
    if lang == "en-US":
        text = f"{_EN_MONTHS[d.month - 1]} {d.day}"
        return f"{text}, {d.year}" if with_year else text
    text = f"{d.month}月{d.day}日"
    return f"{d.year}年{text}" if with_year else text


def time_of_day(t: datetime.datetime | datetime.time, lang: str) -> str:
    """Read a clock time: 24-hour 10点15分 / 10点整 in cmn-CN, 3:05 PM in en-US."""
    _check_lang(lang)
    hour, minute = t.hour, t.minute
    if lang == "en-US":
        suffix = "AM" if hour < 12 else "PM"
        return f"{(hour - 1) % 12 + 1}:{minute:02d} {suffix}"
    return f"{hour}点整" if minute == 0 else f"{hour}点{minute:02d}分"


def month(ym: str, lang: str, today: datetime.date) -> str:
    """Read a ``YYYY-MM`` month, always with its year: 2026年10月 / October 2026."""
    _check_lang(lang)
    match = _MONTH_TEXT.fullmatch(ym)
    if match is None or not 1 <= int(match[2]) <= 12:
        raise ValueError(f"malformed month {ym!r}: expected 'YYYY-MM'")
    year, number = int(match[1]), int(match[2])
    if lang == "en-US":
        return f"{_EN_MONTHS[number - 1]} {year}"
    return f"{year}年{number}月"


def digits(s: str, lang: str) -> str:
    """Read a digit string one digit at a time: ``"1234"`` -> ``"1 2 3 4"``."""
    _check_lang(lang)
    if not s or not (s.isascii() and s.isdigit()):
        raise ValueError(f"malformed digits {s!r}: expected one or more ASCII digits 0-9")
    return " ".join(s)
