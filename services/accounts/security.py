"""PIN hashes: peppered, salted scrypt in a versioned string `s1$<salt hex>$<hash hex>`.

scrypt has two implementations here, OpenSSL's (`hashlib.scrypt`) and libsodium's (PyNaCl):
the same function, the same bytes out, but which is faster depends on the CPU (one AMD EPYC:
OpenSSL 1.45 ms a check, libsodium 2.51; another: 2.15 and 1.57). Every call checks a PIN and
the hash is most of that webhook's CPU, so each process times both once (when it makes its
`AccountStore`, or else on its first check) and keeps the faster.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable

from nacl.bindings import crypto_pwhash_scryptsalsa208sha256_ll

from ..offload import off_loop

_SCHEME = "s1"
_DUMMY = f"{_SCHEME}${'00' * 16}${'00' * 32}"  # parses like a real hash, matches no PIN
N, R, P = 2**10, 8, 1  # scrypt's cost: 1 MiB of memory a check (128 * R * N bytes)
LENGTH = 32  # bytes of hash

Scrypt = Callable[[bytes, bytes], bytes]  # (password, salt) -> hash


def _openssl(password: bytes, salt: bytes) -> bytes:
    return hashlib.scrypt(password, salt=salt, n=N, r=R, p=P, dklen=LENGTH)


def _sodium(password: bytes, salt: bytes) -> bytes:
    return crypto_pwhash_scryptsalsa208sha256_ll(password, salt, N, R, P, dklen=LENGTH)


IMPLEMENTATIONS: dict[str, Scrypt] = {"openssl": _openssl, "sodium": _sodium}


@functools.cache
def fastest() -> str:
    """The name of the faster implementation on this CPU (its thread's CPU time, best of
    three each: some 12 ms, once per process)."""

    def cost(scrypt: Scrypt) -> float:
        spent = []
        for _ in range(3):
            started = time.thread_time()
            scrypt(b"000000", bytes(16))
            spent.append(time.thread_time() - started)
        return min(spent)

    return min(IMPLEMENTATIONS, key=lambda name: cost(IMPLEMENTATIONS[name]))


def _derive(pepper: str, pin: str, salt: bytes) -> bytes:
    # off gevent's loop: the worker's other webhooks are answered during the hash's 1.5 ms
    return off_loop(IMPLEMENTATIONS[fastest()], pin.encode(), pepper.encode() + salt)


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
