"""Password hashing with Argon2id (argon2-cffi), and a verify that takes one path whether the user exists or not.

A password is never stored, only a hash that is slow and memory-hungry to compute, so that someone holding a
copy of the users table needs years, not hours, to try the common passwords against every account. The hash
string carries everything needed to check it later: the variant, the version, the parameters and the salt::

    $argon2id$v=19$m=19456,t=2,p=1$<salt, base64>$<hash, base64>

The parameters are written here, not left to the library's defaults: a library upgrade must not silently
change what the service stores. Raising them later is safe: ``needs_rehash`` tells the sign-in that a user's
hash was made with older parameters, and the sign-in stores a new one while it has the password in hand.

Hashing takes tens of milliseconds of CPU on purpose. Async code runs these methods in a thread
(``asyncio.to_thread``); argon2-cffi releases the GIL while it hashes, so other requests go on meanwhile.
"""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from .credentials import normalize_password

# OWASP's Password Storage Cheat Sheet gives these as a minimum for Argon2id: 19 MiB of memory, 2 passes, 1 lane.
# About 30 ms per hash on the course's test machine. Measure on your own servers before you change them.
TIME_COST = 2
MEMORY_COST_KIB = 19_456
PARALLELISM = 1
HASH_BYTES = 32
SALT_BYTES = 16


def default_hasher() -> PasswordHasher:
    return PasswordHasher(
        time_cost=TIME_COST,
        memory_cost=MEMORY_COST_KIB,
        parallelism=PARALLELISM,
        hash_len=HASH_BYTES,
        salt_len=SALT_BYTES,
        type=Type.ID,
    )


class PasswordHashing:
    """Hash new passwords, verify a password against a stored hash, and spot hashes made with old parameters."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or default_hasher()
        if self._hasher.type is not Type.ID:
            # Argon2i is weaker against GPU attacks, Argon2d against side channels; Argon2id is the one to use.
            raise ValueError(f"passwords are hashed with Argon2id, not {self._hasher.type.name}")
        # A hash of a random password nobody knows, made with the SAME parameters as real hashes. Verifying
        # against it costs what a real verify costs, so an unknown user is not answered faster (see verify).
        self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(32))

    def hash(self, password: str) -> str:
        """The Argon2id hash of a password, with a fresh random salt: two calls give two different strings."""
        return self._hasher.hash(normalize_password(password))

    def verify(self, stored_hash: str | None, password: str) -> bool:
        """True when ``password`` matches ``stored_hash``. ``None`` means "no such user": always False.

        Both cases do the same work, one Argon2 verify, and so take the same time: an attacker who times the
        answers cannot tell which usernames exist. A hash that is broken (not Argon2) gives False, never a crash.
        """
        password = normalize_password(password)
        # exercise 09.1: verify a password, on one path whether the user exists or not
        # hint: No user (stored_hash is None) must cost what a wrong password costs: verify against self._dummy_hash instead of returning at once.
        # hint: self._hasher.verify(hash, password) returns True or RAISES: VerifyMismatchError (a VerificationError) for a wrong password, InvalidHashError for a string that is no Argon2 hash.
        # hint: The dummy check can never let anyone in: return False whenever stored_hash is None, whatever the verify said.
        matched: bool
        try:
            matched = self._hasher.verify(self._dummy_hash if stored_hash is None else stored_hash, password)
        except (VerificationError, InvalidHashError):
            matched = False
        return matched and stored_hash is not None
        # end exercise

    def needs_rehash(self, stored_hash: str) -> bool:
        """True when ``stored_hash`` was made with other parameters than today's: store a new one at sign-in."""
        try:
            return self._hasher.check_needs_rehash(stored_hash)
        except InvalidHashError:
            return True
