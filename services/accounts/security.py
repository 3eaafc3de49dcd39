"""PIN hashes: peppered, salted scrypt in a versioned string `s1$<salt hex>$<hash hex>`."""

from __future__ import annotations

import hashlib
import hmac
import secrets

_SCHEME = "s1"
_DUMMY = f"{_SCHEME}${'00' * 16}${'00' * 32}"  # parses like a real hash, matches no PIN


def _derive(pepper: str, pin: str, salt: bytes) -> bytes:
    return hashlib.scrypt(pin.encode(), salt=pepper.encode() + salt, n=2**10, r=8, p=1, dklen=32)


def hash_pin(pepper: str, pin: str) -> str:
    """A new salted, peppered hash of the PIN, for storage."""
    salt = secrets.token_bytes(16)
    return f"{_SCHEME}${salt.hex()}${_derive(pepper, pin, salt).hex()}"


def check_pin(pepper: str, pin: str, stored: str) -> bool:
    """True if the PIN matches the stored hash (constant-time compare; False if malformed)."""
    try:
        scheme, salt_hex, hash_hex = stored.split("$")
        salt, expected = bytes.fromhex(salt_hex), bytes.fromhex(hash_hex)
    except ValueError:
        return False
    if scheme != _SCHEME:
        return False
    return hmac.compare_digest(_derive(pepper, pin, salt), expected)


def dummy_check(pepper: str) -> None:
    """Spend what a real check costs, so an unknown ID number and a wrong PIN take the same time."""
    check_pin(pepper, "000000", _DUMMY)
