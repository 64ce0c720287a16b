"""Local passwords, hashed with Argon2id (argon2-cffi's defaults: RFC 9106's low-memory profile).

Only people without an organisation OpenID provider need one; the plaintext is never stored
or logged.
"""

from __future__ import annotations

from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 12
# Hashing is deliberately slow: bound the input so a huge "password" cannot burn a worker.
MAX_LENGTH = 1024

_hasher = PasswordHasher()


@cache
def _decoy() -> str:
    """Verified when the email matches no account, so that an unknown address takes as long
    to refuse as a wrong password (the answer does not reveal who has an account)."""
    return _hasher.hash("not-a-password-anyone-has")


class WeakPassword(ValueError):
    """A new password that is too short or too long."""


def check_new_password(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"the password must have at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"the password must have at most {MAX_LENGTH} characters")


def hash_password(password: str) -> str:
    check_new_password(password)
    return _hasher.hash(password)


def verify(stored_hash: str | None, password: str) -> bool:
    """Whether `password` matches; with no stored hash, spend the same time and say no."""
    if len(password) > MAX_LENGTH:
        return False
    try:
        return _hasher.verify(stored_hash or _decoy(), password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    """True when the hash was made with weaker parameters than today's (rehash at sign-in)."""
    return _hasher.check_needs_rehash(stored_hash)
