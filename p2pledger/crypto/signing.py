"""Ed25519 identities (RFC 8032) and their key files.

Private keys live in PEM files holding PKCS#8 (RFC 8410), so ``openssl pkey`` and
every other tool can read them; public keys are written as 64 hex digits in TOML and
as SubjectPublicKeyInfo PEM for third-party verifiers. A private key file is created
with mode 0600 and refused when the group or others can read it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import nacl.exceptions
import nacl.signing

from p2pledger.errors import BadSignature, InsecureKeyFile, KeyFileError, MalformedKey

PUBLIC_KEY_SIZE: Final = 32
SIGNATURE_SIZE: Final = 64
SEED_SIZE: Final = 32

# DER prefixes of the fixed-size RFC 8410 structures for Ed25519.
_PKCS8_PREFIX: Final = bytes.fromhex("302e020100300506032b657004220420")
_SPKI_PREFIX: Final = bytes.fromhex("302a300506032b6570032100")
_PRIVATE_LABEL: Final = "PRIVATE KEY"
_PUBLIC_LABEL: Final = "PUBLIC KEY"


def sha256(data: bytes) -> bytes:
    """SHA-256 digest of ``data``."""
    return hashlib.sha256(data).digest()


@dataclass(frozen=True, slots=True)
class PublicKey:
    """An Ed25519 public key: verifies signatures, prints as hex."""

    raw: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.raw, bytes) or len(self.raw) != PUBLIC_KEY_SIZE:
            raise MalformedKey(f"an Ed25519 public key is {PUBLIC_KEY_SIZE} bytes")

    @classmethod
    def from_hex(cls, text: str) -> PublicKey:
        """Parse 64 hex digits; raise MalformedKey otherwise."""
        try:
            raw = bytes.fromhex(text)
        except (ValueError, TypeError) as exc:
            raise MalformedKey(f"{text!r} is not hex") from exc
        if len(raw) != PUBLIC_KEY_SIZE:
            raise MalformedKey(f"{text!r} is not {PUBLIC_KEY_SIZE * 2} hex digits")
        return cls(raw)

    @property
    def hex(self) -> str:
        return self.raw.hex()

    def verify(self, message: bytes, signature: bytes) -> None:
        """Raise BadSignature unless ``signature`` is this key's over ``message``."""
        if len(signature) != SIGNATURE_SIZE:
            raise BadSignature(f"a signature is {SIGNATURE_SIZE} bytes, got {len(signature)}")
        try:
            nacl.signing.VerifyKey(self.raw).verify(message, signature)
        except (nacl.exceptions.BadSignatureError, ValueError) as exc:
            raise BadSignature(f"signature does not verify under key {self.short}") from exc

    def is_valid(self, message: bytes, signature: bytes) -> bool:
        """True when ``signature`` verifies; never raises for bad input."""
        try:
            self.verify(message, signature)
        except BadSignature:
            return False
        return True

    @property
    def short(self) -> str:
        """The first 8 hex digits, for logs and messages."""
        return self.raw[:4].hex()

    def to_pem(self) -> str:
        """SubjectPublicKeyInfo PEM, as ``openssl pkey -pubin`` reads it."""
        return _pem(_PUBLIC_LABEL, _SPKI_PREFIX + self.raw)

    def __str__(self) -> str:
        return self.hex


class SigningKey:
    """An Ed25519 private key. Its seed never appears in ``repr`` or logs."""

    __slots__ = ("_key", "public_key")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != SEED_SIZE:
            raise MalformedKey(f"an Ed25519 seed is {SEED_SIZE} bytes")
        self._key = nacl.signing.SigningKey(seed)
        self.public_key = PublicKey(bytes(self._key.verify_key))

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(bytes(nacl.signing.SigningKey.generate()))

    def sign(self, message: bytes) -> bytes:
        """The 64-byte detached signature over ``message``."""
        return bytes(self._key.sign(message).signature)

    def seed(self) -> bytes:
        return bytes(self._key)

    def to_pem(self) -> str:
        """PKCS#8 PEM, as ``openssl pkey`` reads it."""
        return _pem(_PRIVATE_LABEL, _PKCS8_PREFIX + self.seed())

    @classmethod
    def from_pem(cls, text: str) -> SigningKey:
        der = _unpem(_PRIVATE_LABEL, text)
        if len(der) != len(_PKCS8_PREFIX) + SEED_SIZE or not der.startswith(_PKCS8_PREFIX):
            raise MalformedKey("the PEM block is not an Ed25519 PKCS#8 private key")
        return cls(der[len(_PKCS8_PREFIX) :])

    def __repr__(self) -> str:
        return f"SigningKey(public={self.public_key.hex})"


def public_key_from_pem(text: str) -> PublicKey:
    """Parse a SubjectPublicKeyInfo PEM holding an Ed25519 key."""
    der = _unpem(_PUBLIC_LABEL, text)
    if len(der) != len(_SPKI_PREFIX) + PUBLIC_KEY_SIZE or not der.startswith(_SPKI_PREFIX):
        raise MalformedKey("the PEM block is not an Ed25519 public key")
    return PublicKey(der[len(_SPKI_PREFIX) :])


def write_signing_key(path: Path, key: SigningKey, *, overwrite: bool = False) -> None:
    """Write ``key`` to ``path`` as PEM, readable by its owner only (mode 0600).

    The file is created with mode 0600 from the start, so the key is never exposed,
    and an existing file is kept unless ``overwrite`` is set.
    """
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError as exc:
        raise KeyFileError(f"{path} already exists; refusing to overwrite a key") from exc
    except OSError as exc:
        raise KeyFileError(f"cannot create key file {path}: {exc.strerror}") from exc
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, key.to_pem().encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)


def load_signing_key(path: Path) -> SigningKey:
    """Read a private key file, refusing one that others could have read."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError as exc:
        raise KeyFileError(f"key file {path} does not exist") from exc
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InsecureKeyFile(
            f"key file {path} is accessible by group or others "
            f"(mode {stat.S_IMODE(mode):04o}); run: chmod 600 {path}"
        )
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc}") from exc
    try:
        return SigningKey.from_pem(text)
    except MalformedKey as exc:
        raise KeyFileError(f"{path}: {exc}") from exc


def _pem(label: str, der: bytes) -> str:
    body = base64.encodebytes(der).decode("ascii")
    return f"-----BEGIN {label}-----\n{body}-----END {label}-----\n"


def _unpem(label: str, text: str) -> bytes:
    begin, end = f"-----BEGIN {label}-----", f"-----END {label}-----"
    start, stop = text.find(begin), text.find(end)
    if start < 0 or stop < start:
        raise MalformedKey(f"no '{begin}' block found")
    body = text[start + len(begin) : stop]
    try:
        return base64.b64decode("".join(body.split()), validate=True)
    except ValueError as exc:
        raise MalformedKey("the PEM block is not valid base64") from exc
