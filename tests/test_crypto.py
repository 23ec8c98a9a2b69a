"""Ed25519 identities and key files (p2pledger.crypto), with openssl as the outside judge."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pledger.crypto import (
    PUBLIC_KEY_SIZE,
    SIGNATURE_SIZE,
    PublicKey,
    SigningKey,
    load_signing_key,
    public_key_from_pem,
    sha256,
    write_signing_key,
)
from p2pledger.errors import (
    BadSignature,
    InsecureKeyFile,
    KeyFileError,
    LocalError,
    MalformedKey,
    RemoteError,
)
from tests.factory import seeded_key

PROPERTY = settings(derandomize=True, database=None, deadline=None, max_examples=50)
OPENSSL = shutil.which("openssl") or (
    "/usr/bin/openssl" if Path("/usr/bin/openssl").exists() else None
)
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")

# RFC 8032 §7.1, TEST 1 and TEST 2: (secret key, public key, message, signature).
RFC8032_VECTORS = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065"
        "224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
        "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
]


@pytest.fixture
def key() -> SigningKey:
    return seeded_key("test-crypto")


@pytest.fixture
def umask_zero() -> Iterator[None]:
    """Run with umask 0, so a file's mode comes from the code and not the environment."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- signatures --------------------------------------------------------------------


@pytest.mark.parametrize(("seed", "public", "message", "signature"), RFC8032_VECTORS)
def test_rfc8032_vectors(seed: str, public: str, message: str, signature: str) -> None:
    key = SigningKey(bytes.fromhex(seed))
    assert key.public_key.hex == public
    assert key.sign(bytes.fromhex(message)).hex() == signature
    PublicKey.from_hex(public).verify(bytes.fromhex(message), bytes.fromhex(signature))


@PROPERTY
@given(st.binary(min_size=32, max_size=32), st.binary(max_size=200))
def test_sign_then_verify(seed: bytes, message: bytes) -> None:
    key = SigningKey(seed)
    signature = key.sign(message)
    assert len(signature) == SIGNATURE_SIZE
    assert len(key.public_key.raw) == PUBLIC_KEY_SIZE
    key.public_key.verify(message, signature)
    assert key.public_key.is_valid(message, signature)


@PROPERTY
@given(st.binary(max_size=100), st.integers(min_value=0), st.integers(min_value=0, max_value=7))
def test_flipped_bit_in_signature_is_refused(message: bytes, where: int, bit: int) -> None:
    key = seeded_key("flip")
    signature = bytearray(key.sign(message))
    signature[where % SIGNATURE_SIZE] ^= 1 << bit
    with pytest.raises(BadSignature):
        key.public_key.verify(message, bytes(signature))
    assert not key.public_key.is_valid(message, bytes(signature))


def test_bad_signatures_raise_bad_signature(key: SigningKey) -> None:
    message = b"transfer 10 units"
    signature = key.sign(message)
    other = seeded_key("someone else")
    cases = [
        (key.public_key, b"transfer 11 units", signature),  # another message
        (other.public_key, message, signature),  # another key
        (key.public_key, message, other.sign(message)),  # another signer
        (key.public_key, message, signature[:-1]),  # too short
        (key.public_key, message, signature + b"\x00"),  # too long
        (key.public_key, message, b""),
        (key.public_key, message, bytes(SIGNATURE_SIZE)),
    ]
    for public, msg, sig in cases:
        with pytest.raises(BadSignature):
            public.verify(msg, sig)
        assert not public.is_valid(msg, sig)
    assert issubclass(BadSignature, RemoteError)


def test_public_key_from_hex(key: SigningKey) -> None:
    assert PublicKey.from_hex(key.public_key.hex) == key.public_key
    assert str(key.public_key) == key.public_key.hex
    for bad in ["", "zz" * 32, key.public_key.hex[:-2], key.public_key.hex + "00"]:
        with pytest.raises(MalformedKey):
            PublicKey.from_hex(bad)
    with pytest.raises(MalformedKey):
        PublicKey(b"\x01" * 31)
    with pytest.raises(MalformedKey):
        SigningKey(b"\x01" * 31)


def test_seed_never_appears_in_repr(key: SigningKey) -> None:
    assert key.seed().hex() not in repr(key)
    assert key.public_key.hex in repr(key)


def test_sha256() -> None:
    # FIPS 180-2 example "abc".
    assert sha256(b"abc").hex() == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


# --- PEM -----------------------------------------------------------------------------


@PROPERTY
@given(st.binary(min_size=32, max_size=32))
def test_pem_round_trips(seed: bytes) -> None:
    key = SigningKey(seed)
    assert SigningKey.from_pem(key.to_pem()).seed() == seed
    assert public_key_from_pem(key.public_key.to_pem()) == key.public_key


def test_pem_labels(key: SigningKey) -> None:
    assert key.to_pem().startswith("-----BEGIN PRIVATE KEY-----\n")
    assert key.to_pem().endswith("-----END PRIVATE KEY-----\n")
    assert key.public_key.to_pem().startswith("-----BEGIN PUBLIC KEY-----\n")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not a key",
        "-----BEGIN PRIVATE KEY-----\n",  # no end line
        "-----END PRIVATE KEY-----\n-----BEGIN PRIVATE KEY-----\n",  # end before begin
        "-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n",  # not base64
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",  # not PKCS#8
    ],
)
def test_malformed_private_pem(text: str) -> None:
    with pytest.raises(MalformedKey):
        SigningKey.from_pem(text)


def test_a_public_key_is_not_a_private_key(key: SigningKey) -> None:
    with pytest.raises(MalformedKey):
        SigningKey.from_pem(key.public_key.to_pem())
    with pytest.raises(MalformedKey):
        public_key_from_pem(key.to_pem())
    # The right label with the other kind of DER inside.
    swapped = key.public_key.to_pem().replace("PUBLIC", "PRIVATE")
    with pytest.raises(MalformedKey):
        SigningKey.from_pem(swapped)


# --- key files -------------------------------------------------------------------------


def test_key_file_round_trip_and_mode_0600(
    tmp_path: Path, key: SigningKey, umask_zero: None
) -> None:
    path = tmp_path / "node.key"
    write_signing_key(path, key)
    assert _mode(path) == 0o600
    assert load_signing_key(path).seed() == key.seed()


def test_write_refuses_to_overwrite(tmp_path: Path, key: SigningKey) -> None:
    path = tmp_path / "node.key"
    write_signing_key(path, key)
    before = path.read_bytes()
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        write_signing_key(path, seeded_key("another"))
    assert path.read_bytes() == before


def test_overwrite_when_asked_resets_the_mode(
    tmp_path: Path, key: SigningKey, umask_zero: None
) -> None:
    path = tmp_path / "node.key"
    path.write_text("old contents, far longer than any PEM key would ever be" * 10)
    path.chmod(0o644)
    write_signing_key(path, key, overwrite=True)
    assert _mode(path) == 0o600
    assert load_signing_key(path).seed() == key.seed()


def test_write_into_a_missing_directory(tmp_path: Path, key: SigningKey) -> None:
    with pytest.raises(KeyFileError):
        write_signing_key(tmp_path / "no" / "such" / "dir" / "node.key", key)


@pytest.mark.parametrize(
    "mode", [0o640, 0o604, 0o644, 0o660, 0o666, 0o620, 0o602, 0o610, 0o700 | 0o001]
)
def test_load_refuses_a_key_others_can_access(tmp_path: Path, key: SigningKey, mode: int) -> None:
    path = tmp_path / "node.key"
    write_signing_key(path, key)
    path.chmod(mode)
    with pytest.raises(InsecureKeyFile) as info:
        load_signing_key(path)
    assert f"chmod 600 {path}" in str(info.value)
    assert isinstance(info.value, KeyFileError)
    assert isinstance(info.value, LocalError)
    path.chmod(0o600)  # the fix the message names works
    assert load_signing_key(path).seed() == key.seed()


def test_load_accepts_owner_read_only(tmp_path: Path, key: SigningKey) -> None:
    path = tmp_path / "node.key"
    write_signing_key(path, key)
    path.chmod(0o400)
    assert load_signing_key(path).seed() == key.seed()


@pytest.mark.parametrize(
    "contents",
    [
        b"",
        b"hello",
        b"-----BEGIN PRIVATE KEY-----\n%%%\n-----END PRIVATE KEY-----\n",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        "clé privée\n".encode(),  # not ASCII
        b"\xff\xfe\x00",
    ],
)
def test_load_refuses_malformed_pem(tmp_path: Path, contents: bytes) -> None:
    path = tmp_path / "node.key"
    path.write_bytes(contents)
    path.chmod(0o600)
    with pytest.raises(KeyFileError) as info:
        load_signing_key(path)
    assert not isinstance(info.value, InsecureKeyFile)


def test_load_a_public_key_file_as_private_is_refused(tmp_path: Path, key: SigningKey) -> None:
    path = tmp_path / "node.pub"
    path.write_text(key.public_key.to_pem())
    path.chmod(0o600)
    with pytest.raises(KeyFileError):
        load_signing_key(path)


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="does not exist"):
        load_signing_key(tmp_path / "absent.key")


# --- interoperability with openssl ------------------------------------------------------


def _openssl(*args: str, stdin: bytes | None = None) -> bytes:
    assert OPENSSL is not None
    done = subprocess.run(
        [OPENSSL, *args], input=stdin, capture_output=True, check=True, timeout=30
    )
    return done.stdout


@needs_openssl
def test_openssl_derives_the_same_public_key(tmp_path: Path, key: SigningKey) -> None:
    path = tmp_path / "node.key"
    write_signing_key(path, key)
    out = _openssl("pkey", "-in", str(path), "-pubout").decode("ascii")
    assert out == key.public_key.to_pem()
    assert public_key_from_pem(out) == key.public_key


@needs_openssl
def test_openssl_signature_verifies_here(tmp_path: Path, key: SigningKey) -> None:
    path = tmp_path / "node.key"
    write_signing_key(path, key)
    message = b"anchor sha256:" + sha256(b"court evidence #4411")
    (tmp_path / "msg").write_bytes(message)
    signature = _openssl(
        "pkeyutl", "-sign", "-inkey", str(path), "-rawin", "-in", str(tmp_path / "msg")
    )
    key.public_key.verify(message, signature)
    assert signature == key.sign(message)  # Ed25519 signatures are deterministic
    with pytest.raises(BadSignature):
        key.public_key.verify(message + b".", signature)


@needs_openssl
def test_our_signature_verifies_in_openssl(tmp_path: Path, key: SigningKey) -> None:
    message = b"relief fund: allocate 500 to district 7"
    (tmp_path / "msg").write_bytes(message)
    (tmp_path / "sig").write_bytes(key.sign(message))
    (tmp_path / "pub.pem").write_text(key.public_key.to_pem())
    out = _openssl(
        "pkeyutl",
        "-verify",
        "-pubin",
        "-inkey",
        str(tmp_path / "pub.pem"),
        "-rawin",
        "-in",
        str(tmp_path / "msg"),
        "-sigfile",
        str(tmp_path / "sig"),
    )
    assert b"Signature Verified Successfully" in out


@needs_openssl
def test_a_key_generated_by_openssl_loads(tmp_path: Path) -> None:
    path = tmp_path / "openssl.key"
    _openssl("genpkey", "-algorithm", "ed25519", "-out", str(path))
    path.chmod(0o600)
    key = load_signing_key(path)
    out = _openssl("pkey", "-in", str(path), "-pubout").decode("ascii")
    assert public_key_from_pem(out) == key.public_key
