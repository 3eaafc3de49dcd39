"""Chinese resident ID numbers (GB 11643): normalise, validate, mask, digest.

Pure functions, shared by the IVR and the account service. After entry a full ID
number is never passed around: everything else names it by its `digest`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import date

_SHAPE = re.compile(r"[0-9]{17}[0-9X]")
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"  # ISO 7064 MOD 11-2: check character by remainder


def normalize(raw: str) -> str:
    """The canonical form: no surrounding blanks, uppercase, `*` (keyed on a phone) as `X`."""
    return raw.strip().upper().replace("*", "X")


def check_char(first17: str) -> str:
    """The GB 11643 check character of the first 17 digits."""
    return _CHECK[sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True)) % 11]


def is_valid(id_number: str) -> bool:
    """True if the (normalised) ID number has the right shape, birth date and check character."""
    value = normalize(id_number)
    if not _SHAPE.fullmatch(value):
        return False
    year, month, day = int(value[6:10]), int(value[10:12]), int(value[12:14])
    if not 1900 <= year <= 2100:
        return False
    try:
        date(year, month, day)
    except ValueError:
        return False
    return value[17] == check_char(value[:17])


def mask(id_number: str) -> str:
    """The ID number with all but its first 3 and last 4 characters as `*` (all `*` if short)."""
    value = normalize(id_number)
    if len(value) < 8:
        return "*" * len(value)
    return value[:3] + "*" * (len(value) - 7) + value[-4:]


def digest(pepper: str, id_number: str) -> str:
    """The hex HMAC-SHA256 of the normalised ID number keyed by the pepper: its name everywhere."""
    return hmac.new(pepper.encode(), normalize(id_number).encode(), hashlib.sha256).hexdigest()
