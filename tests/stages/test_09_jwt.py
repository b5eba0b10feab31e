"""Stage 09 — passwords, JWT access tokens, refresh tokens. These tests grade the exercises of stage 09.

Every test that stores something gets a fresh database with the app's migrations (the `postgres_url` fixture
of conftest.py) and a Redis key prefix of its own, deleted afterwards. The tokens of the attacks are made
here, by hand, exactly as an attacker would make them: they do not depend on your issuer.
"""

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import argon2
import jwt
import psycopg
import pytest
import redis
from app.auth import passwords as password_settings
from app.auth.accounts import PostgresAccounts
from app.auth.credentials import (
    AccessClaims,
    InvalidCredentials,
    InvalidPassword,
    InvalidToken,
    RefreshRefused,
    Rotation,
    TokenPair,
)
from app.auth.passwords import PasswordHashing
from app.auth.service import AuthService
from app.auth.sessions import PostgresSessions
from app.auth.token_denylist import TokenDenylist
from app.auth.tokens import (
    LEEWAY_SECONDS,
    SigningKeyError,
    TokenIssuer,
    TokenVerifier,
    ephemeral_signing_key,
    load_public_key,
    load_signing_key,
)
from app.auth.users import UserAlreadyExists
from app.auth.wiring import build_auth_service
from app.config import load_settings
from app.config.settings import Environment, Settings, mask_url_password
from app.db.pool import open_pool
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from loguru import logger
from pydantic import SecretStr

exercise = pytest.mark.exercise
FIX = "Fix: python -m workbook services up"
T = TypeVar("T")

# The auth service's key pair for these tests, made once. The private half signs, the public half verifies.
KEY = Ed25519PrivateKey.generate()
PUBLIC_PEM = KEY.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
PUBLIC_RAW = KEY.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
PRIVATE_PEM = KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()

ISSUER = "messenger-auth"
AUDIENCE = "messenger"
PASSWORD = "correct horse battery staple"


# Fixtures ----------------------------------------------------------------------------------------------------


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    url = load_settings().redis.url
    client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=5, socket_connect_timeout=5)
    try:
        client.ping()
    except redis.RedisError as error:
        pytest.fail(f"Redis does not answer at {mask_url_password(url)}: {error}. {FIX}")
    yield client
    client.close()


@pytest.fixture
def prefix(client: redis.Redis) -> Iterator[str]:
    """A key prefix no other test uses; every key under it is deleted after the test."""
    prefix = f"stage09:{uuid.uuid4().hex[:12]}:"
    yield prefix
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)


@pytest.fixture
def settings(postgres_url: str) -> Settings:
    base = load_settings()
    return base.model_copy(
        update={
            # Every connection is open before a test starts, so concurrent calls really run at the same moment.
            "postgres": base.postgres.model_copy(update={"url": postgres_url, "pool_min_size": 4, "pool_max_size": 4}),
            "jwt": base.jwt.model_copy(
                update={
                    "signing_key": SecretStr(PRIVATE_PEM),
                    "public_key": None,
                    "issuer": ISSUER,
                    "audience": AUDIENCE,
                }
            ),
        }
    )


@pytest.fixture
def verifier(client: redis.Redis, prefix: str) -> TokenVerifier:
    return TokenVerifier(
        KEY.public_key(), issuer=ISSUER, audience=AUDIENCE, denylist=TokenDenylist(client, prefix=prefix)
    )


class CountingHasher(argon2.PasswordHasher):
    """The app's Argon2 parameters, and a record of every hash that verify() was asked to check."""

    def __init__(self) -> None:
        super().__init__(
            time_cost=password_settings.TIME_COST,
            memory_cost=password_settings.MEMORY_COST_KIB,
            parallelism=password_settings.PARALLELISM,
            hash_len=password_settings.HASH_BYTES,
            salt_len=password_settings.SALT_BYTES,
            type=argon2.Type.ID,
        )
        self.verified: list[str] = []

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        self.verified.append(hash if isinstance(hash, str) else hash.decode())
        return super().verify(hash, password)


@dataclass
class App:
    auth: AuthService
    sessions: PostgresSessions
    users: PostgresAccounts
    hasher: CountingHasher
    denylist: TokenDenylist


def run(settings: Settings, client: redis.Redis, prefix: str, scenario: Callable[[App], Awaitable[T]]) -> T:
    """Run one async scenario against the real auth service, with a pool opened and closed around it."""

    async def main() -> T:
        async with open_pool(settings.postgres) as pool:
            hasher = CountingHasher()
            auth = build_auth_service(settings, pool, client, prefix=prefix, passwords=PasswordHashing(hasher))
            sessions = PostgresSessions(pool, ttl_seconds=settings.jwt.refresh_ttl_seconds)
            app = App(auth, sessions, PostgresAccounts(pool), hasher, TokenDenylist(client, prefix=prefix))
            return await scenario(app)

    return asyncio.run(main())


def query(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """What the database holds, read directly: the tests check the tables, not only what the code returns."""
    with psycopg.connect(url) as connection:
        return connection.execute(sql, params).fetchall()  # type: ignore[arg-type]


async def signed_in(app: App, username: str = "alice") -> TokenPair:
    await app.auth.register(username, f"{username}@example.org", PASSWORD, display_name=username.title())
    return await app.auth.login(username, PASSWORD)


# Tokens made by hand -------------------------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_json(document: dict[str, Any]) -> str:
    return b64url(json.dumps(document, separators=(",", ":")).encode())


def claims(**changes: Any) -> dict[str, Any]:
    """Good claims for user 7, valid for 10 minutes; a change set to None leaves that claim out."""
    now = int(time.time())
    document = {"sub": "7", "iat": now, "exp": now + 600, "iss": ISSUER, "aud": AUDIENCE, "jti": uuid.uuid4().hex}
    document.update(changes)
    return {name: value for name, value in document.items() if value is not None}


def signed(document: dict[str, Any], key: Ed25519PrivateKey = KEY) -> str:
    """A token signed the right way (EdDSA) with `key`."""
    return jwt.encode(document, key, algorithm="EdDSA")


def unsigned(document: dict[str, Any], alg: str = "none") -> str:
    """A token with no signature at all, whose header says so."""
    return f"{b64url_json({'alg': alg, 'typ': 'JWT'})}.{b64url_json(document)}."


def with_hs256(document: dict[str, Any], secret: bytes) -> str:
    """An HS256 token whose HMAC secret is `secret`: the key-confusion attack when `secret` is the public key."""
    signing_input = f"{b64url_json({'alg': 'HS256', 'typ': 'JWT'})}.{b64url_json(document)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def payload_of(token: str) -> dict[str, Any]:
    """The claims of a token, read WITHOUT checking anything: anyone can do this with any token."""
    part = token.split(".")[1]
    document: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return document


def refusal(verifier: TokenVerifier, token: str, what: str) -> InvalidToken:
    """The InvalidToken that verify must raise for `token`; the test fails in plain words otherwise."""
    try:
        accepted = verifier.verify(token)
    except InvalidToken as error:
        return error
    except NotImplementedError:
        raise
    except Exception as error:
        pytest.fail(
            f"{what}: verify must raise InvalidToken, and only that; it let out {type(error).__name__}: {error}"
        )
    pytest.fail(f"{what} was ACCEPTED as {accepted!r}; it must be refused with InvalidToken")


# 09.1 — passwords ----------------------------------------------------------------------------------------------


@exercise("09.1")
def test_the_right_password_verifies_and_a_wrong_one_does_not() -> None:
    passwords = PasswordHashing(CountingHasher())
    stored = passwords.hash(PASSWORD)
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$"), f"the hash must be Argon2id: {stored}"
    assert passwords.verify(stored, PASSWORD) is True, "the right password must verify"
    for wrong in ["correct horse battery stapler", "Correct horse battery staple", "", PASSWORD + " "]:
        assert passwords.verify(stored, wrong) is False, f"the wrong password {wrong!r} must not verify"
    assert passwords.hash(PASSWORD) != stored, "two hashes of one password must differ (a fresh salt each time)"


@exercise("09.1")
def test_a_broken_stored_hash_refuses_and_does_not_crash() -> None:
    passwords = PasswordHashing(CountingHasher())
    for broken in ["", "not-a-hash", "$argon2id$v=19$m=19456,t=2,p=1$broken"]:
        assert passwords.verify(broken, PASSWORD) is False, f"a stored hash {broken!r} must give False, not raise"


@exercise("09.1")
def test_an_unknown_user_costs_one_argon2_verify_like_a_wrong_password() -> None:
    hasher = CountingHasher()
    passwords = PasswordHashing(hasher)
    stored = passwords.hash(PASSWORD)
    hasher.verified.clear()

    assert passwords.verify(None, PASSWORD) is False, "no user (stored hash None) must never verify"
    assert len(hasher.verified) == 1, (
        f"no user must cost ONE Argon2 verify, like a wrong password (against a dummy hash); it cost {len(hasher.verified)}"
    )
    dummy = hasher.verified[0]
    assert dummy.rsplit("$", 2)[0] == stored.rsplit("$", 2)[0], (
        f"the dummy hash must use the same parameters as real ones, or it takes another time: {dummy} vs {stored}"
    )
    assert passwords.verify(None, "") is False, "no user must never verify, whatever the password"


@exercise("09.1")
def test_login_refuses_an_unknown_user_and_a_wrong_password_alike(
    settings: Settings, client: redis.Redis, prefix: str
) -> None:
    async def scenario(app: App) -> list[tuple[str, int]]:
        await app.auth.register("alice", "alice@example.org", PASSWORD)
        outcomes = []
        for username, password in [("alice", "not her password"), ("nobody", "not her password"), ("nobody", PASSWORD)]:
            app.hasher.verified.clear()
            with pytest.raises(InvalidCredentials) as refused:
                await app.auth.login(username, password)
            outcomes.append((str(refused.value), len(app.hasher.verified)))
        return outcomes

    outcomes = run(settings, client, prefix, scenario)
    messages = {message for message, _ in outcomes}
    assert len(messages) == 1, f"a wrong password and an unknown user must get the same message; got {messages}"
    assert [count for _, count in outcomes] == [1, 1, 1], (
        f"each refused login must cost exactly one Argon2 verify (unknown user included); counted {outcomes}"
    )


@exercise("09.1")
def test_register_stores_an_argon2id_hash_and_never_the_password(
    settings: Settings, client: redis.Redis, prefix: str
) -> None:
    async def scenario(app: App) -> None:
        user = await app.auth.register("alice", "alice@example.org", PASSWORD, display_name="Alice")
        assert (user.username, user.display_name) == ("alice", "Alice"), f"register must return the user: {user!r}"

    run(settings, client, prefix, scenario)
    [(stored,)] = query(settings.postgres.url, "SELECT password_hash FROM auth.users WHERE username = 'alice'")
    assert stored.startswith("$argon2id$"), f"the users table must hold an Argon2id hash; it holds {stored[:20]}…"
    assert PASSWORD not in stored, "the password itself must never be stored"
    assert PasswordHashing().verify(stored, PASSWORD), "the stored hash must verify the password"


@exercise("09.1")
def test_a_taken_username_and_a_bad_password_are_refused(settings: Settings, client: redis.Redis, prefix: str) -> None:
    async def scenario(app: App) -> None:
        await app.auth.register("alice", "alice@example.org", PASSWORD)
        with pytest.raises(UserAlreadyExists) as taken:
            await app.auth.register("alice", "other@example.org", PASSWORD)
        assert taken.value.field == "username", f"the error must name the username, it named {taken.value.field!r}"
        for bad in ["short", "x" * 129]:
            with pytest.raises(InvalidPassword, match="8 to 128"):
                await app.auth.register("bob", "bob@example.org", bad)

    run(settings, client, prefix, scenario)
    assert query(settings.postgres.url, "SELECT username FROM auth.users") == [("alice",)], "only alice may be stored"


# 09.2 — issuing access tokens ----------------------------------------------------------------------------------


@exercise("09.2")
def test_an_issued_token_carries_every_claim_and_is_signed_with_eddsa() -> None:
    issuer = TokenIssuer(KEY, issuer=ISSUER, audience=AUDIENCE, ttl_seconds=900)
    issued = issuer.issue(42)
    header = jwt.get_unverified_header(issued.token)
    assert header.get("alg") == "EdDSA", f"the token must be signed with EdDSA (Ed25519); its header says {header}"
    try:
        document = jwt.decode(issued.token, KEY.public_key(), algorithms=["EdDSA"], audience=AUDIENCE, issuer=ISSUER)
    except jwt.PyJWTError as error:
        pytest.fail(f"the token must verify with the public key, for aud {AUDIENCE!r} and iss {ISSUER!r}: {error}")
    assert set(document) >= {"sub", "exp", "iat", "iss", "aud", "jti"}, f"claims missing: {sorted(document)}"
    assert document["sub"] == "42", f"sub must be the user id as a string, got {document['sub']!r}"
    assert document["exp"] - document["iat"] == 900, f"exp must be iat + ttl_seconds: {document}"
    assert abs(document["iat"] - time.time()) < 60, f"iat must be now, got {document['iat']}"
    assert (issued.jti, issued.expires_at) == (document["jti"], document["exp"]), (
        f"AccessToken must carry the token's own jti and exp: {issued!r} vs {document}"
    )


@exercise("09.2")
def test_every_token_gets_its_own_id() -> None:
    issuer = TokenIssuer(KEY, issuer=ISSUER, audience=AUDIENCE, ttl_seconds=900, clock=lambda: 1_900_000_000.0)
    first, second = issuer.issue(1), issuer.issue(1)
    assert first.jti and first.jti != second.jti, (
        f"two tokens made in the same second need different jti values (the deny-list key): {first.jti!r}, {second.jti!r}"
    )
    assert payload_of(first.token)["iat"] == 1_900_000_000, "iat must come from the issuer's clock, in whole seconds"


@exercise("09.2")
def test_login_gives_an_access_token_and_an_opaque_refresh_token(
    settings: Settings, client: redis.Redis, prefix: str
) -> None:
    async def scenario(app: App) -> tuple[int, TokenPair]:
        user = await app.auth.register("alice", "alice@example.org", PASSWORD)
        return user.id, await app.auth.login("alice", PASSWORD)

    user_id, pair = run(settings, client, prefix, scenario)
    assert payload_of(pair.access_token)["sub"] == str(user_id), "the access token must be about the user who logged in"
    assert pair.expires_at == payload_of(pair.access_token)["exp"], "the pair must say when its access token expires"
    assert pair.refresh_token.count(".") == 0 and len(pair.refresh_token) >= 32, (
        f"the refresh token must be opaque random text, not a JWT: {pair.refresh_token!r}"
    )
    digest = hashlib.sha256(pair.refresh_token.encode()).digest()
    rows = query(settings.postgres.url, "SELECT token_hash, user_id FROM auth.sessions")
    assert rows == [(digest, user_id)], (
        f"auth.sessions must hold the SHA-256 of the refresh token only; it holds {rows}"
    )


@exercise("09.2")
def test_login_replaces_a_hash_made_with_old_parameters(settings: Settings, client: redis.Redis, prefix: str) -> None:
    weak = argon2.PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1, type=argon2.Type.ID)

    async def scenario(app: App) -> None:
        await app.users.create("alice", "alice@example.org", weak.hash(PASSWORD))
        await app.auth.login("alice", PASSWORD)

    run(settings, client, prefix, scenario)
    [(stored,)] = query(settings.postgres.url, "SELECT password_hash FROM auth.users")
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$"), (
        f"a successful login must store a new hash with today's parameters; the table holds {stored[:32]}…"
    )


@exercise("09.2")
def test_the_signing_key_comes_from_the_settings_or_is_made_once(settings: Settings) -> None:
    local = settings.jwt.model_copy(update={"signing_key": None})
    warnings: list[str] = []
    sink = logger.add(lambda message: warnings.append(str(message)), level="WARNING")
    ephemeral_signing_key.cache_clear()
    try:
        first = load_signing_key(local, Environment.LOCAL)
        again = load_signing_key(local, Environment.DEV)
        public = load_public_key(local, Environment.LOCAL)
    finally:
        logger.remove(sink)
    assert first is again, "without a signing key, local and dev must use ONE key for the whole process"
    assert public == first.public_key(), "without a public key setting, verifiers use the signing key's public half"
    assert len(warnings) == 1, f"the ephemeral key must be announced by one warning; got {len(warnings)}: {warnings}"

    with pytest.raises(SigningKeyError, match="APP_JWT__SIGNING_KEY"):
        load_signing_key(local, Environment.PROD)
    with pytest.raises(SigningKeyError, match="APP_JWT__SIGNING_KEY"):
        load_signing_key(local.model_copy(update={"signing_key": SecretStr("not a key")}), Environment.LOCAL)
    not_ed25519 = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(SigningKeyError, match="Ed25519"):
        load_signing_key(local.model_copy(update={"signing_key": SecretStr(not_ed25519.decode())}), Environment.LOCAL)
    other_public = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(SigningKeyError, match="APP_JWT__PUBLIC_KEY"):
        load_signing_key(settings.jwt.model_copy(update={"public_key": other_public.decode()}), Environment.LOCAL)
    assert load_public_key(local.model_copy(update={"public_key": PUBLIC_PEM.decode()}), Environment.PROD) == (
        KEY.public_key()
    ), "a verifying service must be able to start with the public key alone"


# 09.3 — verifying access tokens --------------------------------------------------------------------------------


@exercise("09.3")
def test_a_good_token_gives_its_claims(verifier: TokenVerifier) -> None:
    document = claims(sub="7")
    try:
        got = verifier.verify(signed(document))
    except InvalidToken as error:
        pytest.fail(f"a good token was refused: {error.reason}")
    want = AccessClaims(user_id=7, jti=document["jti"], issued_at=document["iat"], expires_at=document["exp"])
    assert got == want, f"verify must return the token's claims: got {got!r}, want {want!r}"


@exercise("09.3")
def test_a_token_just_past_its_exp_is_accepted_within_the_leeway(verifier: TokenVerifier) -> None:
    # Two servers' clocks never agree exactly; the verifier allows LEEWAY_SECONDS (5 s) of difference.
    now = int(time.time())
    try:
        verifier.verify(signed(claims(iat=now - 600, exp=now - 2)))
    except InvalidToken as error:
        pytest.fail(
            f"a token 2 s past its exp must pass with leeway=LEEWAY_SECONDS ({LEEWAY_SECONDS} s): {error.reason}"
        )


@exercise("09.2")
@exercise("09.3")
def test_a_token_from_the_issuer_passes_the_verifier(verifier: TokenVerifier) -> None:
    issued = TokenIssuer(KEY, issuer=ISSUER, audience=AUDIENCE, ttl_seconds=60).issue(5)
    got = verifier.verify(issued.token)
    assert (got.user_id, got.jti, got.expires_at) == (5, issued.jti, issued.expires_at), f"got {got!r} for {issued!r}"


@exercise("09.3")
def test_alg_none_is_refused(verifier: TokenVerifier) -> None:
    for alg in ["none", "None", "NONE"]:
        refusal(verifier, unsigned(claims(), alg), f'a token with "alg": "{alg}" and no signature')


@exercise("09.3")
def test_an_hs256_token_made_with_the_public_key_is_refused(verifier: TokenVerifier) -> None:
    # The classic key confusion: the public key is public, so an attacker uses it as an HMAC secret and hopes
    # the verifier will take "alg" from the header and check HS256 with that same key.
    refusal(verifier, with_hs256(claims(sub="1"), PUBLIC_PEM), "an HS256 token whose secret is the public key (PEM)")
    refusal(verifier, with_hs256(claims(sub="1"), PUBLIC_RAW), "an HS256 token whose secret is the public key (raw)")


@exercise("09.3")
def test_an_expired_token_is_refused(verifier: TokenVerifier) -> None:
    now = int(time.time())
    refusal(verifier, signed(claims(iat=now - 4000, exp=now - 3600)), "a token that expired an hour ago")


@exercise("09.3")
def test_a_token_for_another_audience_or_from_another_issuer_is_refused(verifier: TokenVerifier) -> None:
    refusal(verifier, signed(claims(aud="billing")), "a token for the audience 'billing'")
    refusal(verifier, signed(claims(aud=["billing", AUDIENCE])), "a token for a list of audiences")
    refusal(verifier, signed(claims(iss="someone-else")), "a token from the issuer 'someone-else'")


@exercise("09.3")
def test_a_tampered_payload_is_refused(verifier: TokenVerifier) -> None:
    header, payload, signature = signed(claims(sub="7")).split(".")
    forged_payload = b64url_json({**payload_of(f"{header}.{payload}.{signature}"), "sub": "1"})
    refusal(verifier, f"{header}.{forged_payload}.{signature}", "a token whose sub was changed after signing")
    refusal(verifier, signed(claims(), key=Ed25519PrivateKey.generate()), "a token signed with another key")


@exercise("09.3")
@pytest.mark.parametrize("missing", ["sub", "exp", "iat", "iss", "aud", "jti"])
def test_a_token_without_a_required_claim_is_refused(verifier: TokenVerifier, missing: str) -> None:
    refusal(verifier, signed(claims(**{missing: None})), f"a well-signed token without {missing!r}")


@exercise("09.3")
def test_garbage_and_a_strange_subject_give_invalid_token(verifier: TokenVerifier) -> None:
    for garbage in ["", "abc", "a.b.c", "e30.e30.e30"]:
        refusal(verifier, garbage, f"the string {garbage!r}")
    refusal(verifier, signed(claims(sub="alice")), "a token whose sub is not a user id")
    error = refusal(verifier, signed(claims(aud="billing")), "a token for the audience 'billing'")
    assert error.reason and "billing" not in str(error), (
        f"the message a client sees must not say why; keep that in .reason. Message: {error}"
    )


@exercise("09.3")
def test_a_denied_token_is_refused(verifier: TokenVerifier, client: redis.Redis, prefix: str) -> None:
    document = claims()
    TokenDenylist(client, prefix=prefix).deny(document["jti"], document["exp"])
    refusal(verifier, signed(document), "a token whose jti is on the deny-list")
    verifier.verify(signed(claims()))  # another token of the same user is still fine


@exercise("09.3")
def test_a_verifier_holds_only_the_public_key(client: redis.Redis, prefix: str) -> None:
    with pytest.raises(TypeError):
        TokenVerifier(KEY, issuer=ISSUER, audience=AUDIENCE, denylist=TokenDenylist(client, prefix=prefix))  # type: ignore[arg-type]


@exercise("09.3")
def test_authenticate_gives_the_user_id_of_a_login(settings: Settings, client: redis.Redis, prefix: str) -> None:
    async def scenario(app: App) -> None:
        pair = await signed_in(app)
        [(alice_id,)] = await asyncio.to_thread(query, settings.postgres.url, "SELECT id FROM auth.users")
        assert await app.auth.authenticate(pair.access_token) == alice_id, "authenticate must give alice's id"
        with pytest.raises(InvalidToken):
            await app.auth.authenticate(pair.access_token[:-4] + "AAAA")

    run(settings, client, prefix, scenario)


# 09.4 — refresh tokens: rotation and reuse detection -----------------------------------------------------------


async def new_user(app: App, username: str = "alice") -> int:
    return (await app.users.create(username, f"{username}@example.org", "hash-not-used-here")).id


@exercise("09.4")
def test_a_refresh_token_is_rotated_into_a_new_one_of_the_same_family(
    settings: Settings, client: redis.Redis, prefix: str
) -> None:
    async def scenario(app: App) -> list[str]:
        user_id = await new_user(app)
        first = await app.sessions.start(user_id)
        second = await app.sessions.rotate(first)
        third = await app.sessions.rotate(second.refresh_token)
        assert (second.user_id, third.user_id) == (user_id, user_id), "a rotation must say whose session it is"
        return [first, second.refresh_token, third.refresh_token]

    tokens = run(settings, client, prefix, scenario)
    assert len(set(tokens)) == 3, "every refresh must give a NEW refresh token"
    rows = query(
        settings.postgres.url,
        "SELECT token_hash, family_id, rotated_at IS NOT NULL, revoked_at IS NOT NULL FROM auth.sessions"
        " ORDER BY created_at, rotated_at NULLS LAST",
    )
    by_hash = {bytes(row[0]): row[1:] for row in rows}
    states = [by_hash.get(hashlib.sha256(token.encode()).digest()) for token in tokens]
    assert None not in states and len(rows) == 3, f"each token must have its row, stored as a hash: {rows}"
    assert len({state[0] for state in states}) == 1, "all rotations of one login must share a family_id"
    assert [state[1:] for state in states] == [(True, False), (True, False), (False, False)], (
        f"the used tokens must be marked rotated, the newest not: {states}"
    )


@exercise("09.4")
def test_a_reused_refresh_token_revokes_its_whole_family(settings: Settings, client: redis.Redis, prefix: str) -> None:
    async def scenario(app: App) -> None:
        user_id = await new_user(app)
        stolen = await app.sessions.start(user_id)
        other_device = await app.sessions.start(user_id)
        rotated = await app.sessions.rotate(stolen)
        with pytest.raises(RefreshRefused) as reused:
            await app.sessions.rotate(stolen)
        assert reused.value.reason == "reused", f"a token used twice must be refused as 'reused': {reused.value.reason}"
        with pytest.raises(RefreshRefused):
            await app.sessions.rotate(rotated.refresh_token)
        next_token = await app.sessions.rotate(other_device)  # another login of the same user is not touched
        assert next_token.user_id == user_id

    run(settings, client, prefix, scenario)
    live = query(settings.postgres.url, "SELECT count(*) FROM auth.sessions WHERE revoked_at IS NULL")
    assert live == [(2,)], f"only the other login's two tokens may stay unrevoked; {live[0][0]} are"


@exercise("09.4")
def test_an_expired_an_unknown_and_a_revoked_refresh_token_are_refused(
    settings: Settings, client: redis.Redis, prefix: str
) -> None:
    async def scenario(app: App) -> list[str]:
        user_id = await new_user(app)
        expired, revoked = await app.sessions.start(user_id), await app.sessions.start(user_id)
        await asyncio.to_thread(
            query,
            settings.postgres.url,
            "UPDATE auth.sessions SET created_at = now() - interval '2 days', expires_at = now() - interval '1 day'"
            " WHERE token_hash = %s RETURNING id",
            hashlib.sha256(expired.encode()).digest(),
        )
        await app.sessions.revoke_family(revoked, user_id)
        reasons = []
        for token in [expired, "made-up-token", revoked]:
            with pytest.raises(RefreshRefused) as refused:
                await app.sessions.rotate(token)
            reasons.append(refused.value.reason)
        return reasons

    reasons = run(settings, client, prefix, scenario)
    assert reasons == ["expired", "unknown", "revoked"], f"the reasons must be expired, unknown, revoked: {reasons}"


@exercise("09.4")
def test_two_concurrent_refreshes_of_one_token_exactly_one_succeeds(
    settings: Settings, client: redis.Redis, prefix: str
) -> None:
    async def scenario(app: App) -> list[list[str]]:
        user_id = await new_user(app)
        rounds = []
        for _ in range(10):
            token = await app.sessions.start(user_id)
            outcomes = await asyncio.gather(
                app.sessions.rotate(token), app.sessions.rotate(token), return_exceptions=True
            )
            for outcome in outcomes:
                if isinstance(outcome, NotImplementedError):
                    raise outcome
            rounds.append([type(outcome).__name__ for outcome in outcomes])
        return rounds

    for outcome in run(settings, client, prefix, scenario):
        assert sorted(outcome) == ["RefreshRefused", "Rotation"], (
            f"two refreshes of one token at the same moment: exactly one may succeed; got {outcome}"
        )


@exercise("09.4")
def test_refresh_gives_a_new_pair_and_a_reused_token_kills_the_new_one(
    settings: Settings, client: redis.Redis, prefix: str
) -> None:
    async def scenario(app: App) -> None:
        first = await signed_in(app)
        second = await app.auth.refresh(first.refresh_token)
        assert second.refresh_token != first.refresh_token, "refresh must give a new refresh token"
        assert payload_of(second.access_token)["jti"] != payload_of(first.access_token)["jti"], "and a new access token"
        await app.auth.authenticate(second.access_token)
        with pytest.raises(RefreshRefused):
            await app.auth.refresh(first.refresh_token)  # the thief, or the real client: one of them reused it
        with pytest.raises(RefreshRefused):
            await app.auth.refresh(second.refresh_token)

    run(settings, client, prefix, scenario)


# 09.5 — logout -------------------------------------------------------------------------------------------------


@exercise("09.5")
def test_after_logout_its_access_and_refresh_tokens_are_refused(
    settings: Settings, client: redis.Redis, prefix: str
) -> None:
    async def scenario(app: App) -> None:
        pair = await signed_in(app)
        await app.auth.authenticate(pair.access_token)
        await app.auth.logout(pair.access_token, pair.refresh_token)
        with pytest.raises(InvalidToken):
            await app.auth.authenticate(pair.access_token)
        with pytest.raises(RefreshRefused):
            await app.auth.refresh(pair.refresh_token)

    run(settings, client, prefix, scenario)


@exercise("09.5")
def test_the_deny_list_entry_lasts_as_long_as_the_token_is_accepted(
    settings: Settings, client: redis.Redis, prefix: str
) -> None:
    async def scenario(app: App) -> TokenPair:
        pair = await signed_in(app)
        await app.auth.logout(pair.access_token, pair.refresh_token)
        return pair

    pair = run(settings, client, prefix, scenario)
    document = payload_of(pair.access_token)
    key = TokenDenylist(client, prefix=prefix).key(document["jti"])
    expiry = client.expiretime(key)
    assert expiry == document["exp"] + LEEWAY_SECONDS, (
        f"the verifier accepts a token until exp + LEEWAY_SECONDS ({document['exp'] + LEEWAY_SECONDS}); "
        f"the deny-list entry must last that long, it expires at {expiry} (-2: no entry, -1: never)"
    )


@exercise("09.5")
def test_logout_ends_only_its_own_sign_in(settings: Settings, client: redis.Redis, prefix: str) -> None:
    async def scenario(app: App) -> None:
        laptop = await signed_in(app)
        phone = await app.auth.login("alice", PASSWORD)
        await app.auth.logout(laptop.access_token, laptop.refresh_token)
        await app.auth.authenticate(phone.access_token)
        renewed = await app.auth.refresh(phone.refresh_token)
        await app.auth.authenticate(renewed.access_token)

    run(settings, client, prefix, scenario)


class FailingOnce:
    """A session store whose first revoke_family fails, as when PostgreSQL drops the connection."""

    def __init__(self, inner: PostgresSessions) -> None:
        self.inner = inner
        self.failed = False

    async def start(self, user_id: int) -> str:
        return await self.inner.start(user_id)

    async def rotate(self, token: str) -> Rotation:
        return await self.inner.rotate(token)

    async def revoke_family(self, token: str, user_id: int) -> int:
        if not self.failed:
            self.failed = True
            raise ConnectionError("the database went away")
        return await self.inner.revoke_family(token, user_id)


@exercise("09.5")
def test_a_logout_that_failed_half_way_can_be_retried(settings: Settings, client: redis.Redis, prefix: str) -> None:
    async def scenario(app: App) -> None:
        verifier = TokenVerifier(KEY.public_key(), issuer=ISSUER, audience=AUDIENCE, denylist=app.denylist)
        auth = AuthService(
            app.users,
            FailingOnce(app.sessions),
            passwords=PasswordHashing(app.hasher),
            issuer=TokenIssuer(KEY, issuer=ISSUER, audience=AUDIENCE, ttl_seconds=900),
            verifier=verifier,
            denylist=app.denylist,
        )
        pair = await signed_in(app)
        with pytest.raises(ConnectionError):
            await auth.logout(pair.access_token, pair.refresh_token)
        try:
            await auth.logout(pair.access_token, pair.refresh_token)
        except InvalidToken:
            pytest.fail(
                "the first logout failed while revoking the refresh family, yet it had already deny-listed the "
                "access token, so the retry is refused and the refresh token stays alive. Revoke first, deny last."
            )
        with pytest.raises(RefreshRefused):
            await app.auth.refresh(pair.refresh_token)

    run(settings, client, prefix, scenario)


@exercise("09.5")
def test_logout_with_a_bad_access_token_changes_nothing(settings: Settings, client: redis.Redis, prefix: str) -> None:
    async def scenario(app: App) -> None:
        pair = await signed_in(app)
        bob = await signed_in(app, "bob")
        with pytest.raises(InvalidToken):
            await app.auth.logout("not-a-token", pair.refresh_token)
        await app.auth.logout(bob.access_token, pair.refresh_token)  # bob cannot end alice's sign-in
        await app.auth.refresh(pair.refresh_token)

    run(settings, client, prefix, scenario)
