"""Ephemeral X25519 key exchange and the session-key derivation of the member transport.

Why here: ``p2pledger.crypto`` is the only package that imports PyNaCl. The wire
handshake (``p2pledger.wire.handshake``) calls these functions and never sees a raw
libsodium binding.

What it provides:

- ``EphemeralKey``: a fresh X25519 key pair for one connection, never stored.
- ``check_public_point``: refuses the all-zero point and every other point of small
  order (the u-coordinates of order 1, 2, 4 and 8, in any of their encodings), so a
  peer cannot force a predictable shared secret.
- ``transcript_hash``: BLAKE2b-256, personalised, over length-prefixed transcript parts.
- ``derive_session_keys``: the shared secret is never used raw. Keyed BLAKE2b-512
  (key = X25519 shared secret, message = transcript hash, personalisation fixed) gives
  64 bytes, split into one 32-byte key per direction. Because the transcript hash
  covers both ephemeral keys, the chain id and the protocol version, a peer on another
  chain or version derives different keys even if every other check were skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import nacl.bindings
import nacl.exceptions

from p2pledger.errors import CryptoError, MalformedKey, RemoteError

__all__ = [
    "X25519_KEY_SIZE",
    "EphemeralKey",
    "LowOrderPoint",
    "SessionKeys",
    "check_public_point",
    "derive_session_keys",
    "transcript_hash",
]

X25519_KEY_SIZE: Final = 32
SESSION_KEY_SIZE: Final = 32
TRANSCRIPT_HASH_SIZE: Final = 32

_P: Final = 2**255 - 19
# u-coordinates (mod p) of the points of order 1, 2, 4 and 8 on Curve25519: the list
# libsodium blacklists in crypto_scalarmult (x25519_ref10.c), reduced mod p.
_SMALL_ORDER_U: Final = frozenset(
    {
        0,
        1,
        325606250916557431795983626356110631294008115727848805560023387167927233504,
        39382357235489614581723060781553021112529911719440698176882885853963445705823,
        _P - 1,
    }
)
_U_MASK: Final = (1 << 255) - 1  # RFC 7748: the top bit of a u-coordinate is ignored

_TRANSCRIPT_PERSON: Final = b"p2pl-transcript1"  # 16 bytes: BLAKE2b personalisation
_SESSION_PERSON: Final = b"p2pl-session-v1\x00"


class LowOrderPoint(CryptoError, RemoteError):
    """An X25519 public key is all-zero or of small order; the shared secret would be
    predictable, so the peer is refused."""


def check_public_point(raw: bytes) -> None:
    """Raise unless ``raw`` is a 32-byte X25519 public key of large order."""
    if not isinstance(raw, bytes) or len(raw) != X25519_KEY_SIZE:
        raise MalformedKey(f"an X25519 public key is {X25519_KEY_SIZE} bytes")
    u = (int.from_bytes(raw, "little") & _U_MASK) % _P
    if u in _SMALL_ORDER_U:
        raise LowOrderPoint("the X25519 public key is all-zero or of small order")


class EphemeralKey:
    """A one-connection X25519 key pair. The secret never appears in ``repr``."""

    __slots__ = ("_secret", "public")

    def __init__(self, secret: bytes) -> None:
        if len(secret) != X25519_KEY_SIZE:
            raise MalformedKey(f"an X25519 secret key is {X25519_KEY_SIZE} bytes")
        self._secret = secret
        self.public: bytes = nacl.bindings.crypto_scalarmult_base(secret)

    @classmethod
    def generate(cls) -> EphemeralKey:
        """A fresh key from the operating system's CSPRNG (via libsodium)."""
        return cls(nacl.bindings.randombytes(X25519_KEY_SIZE))

    def shared_secret(self, peer_public: bytes) -> bytes:
        """X25519 with ``peer_public``; raise LowOrderPoint for a weak point.

        The explicit check runs first so the reason is precise; libsodium's own refusal
        of an all-zero result is kept as a second line of defence.
        """
        check_public_point(peer_public)
        try:
            shared: bytes = nacl.bindings.crypto_scalarmult(self._secret, peer_public)
        except nacl.exceptions.RuntimeError as exc:  # pragma: no cover - checked above
            raise LowOrderPoint("X25519 produced an all-zero shared secret") from exc
        if shared == bytes(X25519_KEY_SIZE):  # pragma: no cover - libsodium refuses it
            raise LowOrderPoint("X25519 produced an all-zero shared secret")
        return shared

    def __repr__(self) -> str:
        return f"EphemeralKey(public={self.public.hex()})"


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionKeys:
    """One AEAD key per direction of a connection; never logged."""

    dialer_to_listener: bytes
    listener_to_dialer: bytes

    def __repr__(self) -> str:
        return "SessionKeys(<secret>)"


def transcript_hash(*parts: bytes) -> bytes:
    """BLAKE2b-256 over ``parts``, each prefixed by its 4-byte length (unambiguous)."""
    data = b"".join(len(p).to_bytes(4, "big") + p for p in parts)
    digest: bytes = nacl.bindings.crypto_generichash_blake2b_salt_personal(
        data, digest_size=TRANSCRIPT_HASH_SIZE, person=_TRANSCRIPT_PERSON
    )
    return digest


def derive_session_keys(shared_secret: bytes, transcript: bytes) -> SessionKeys:
    """Keyed BLAKE2b-512(key=shared, msg=transcript) split into two direction keys."""
    if len(shared_secret) != X25519_KEY_SIZE or len(transcript) != TRANSCRIPT_HASH_SIZE:
        raise ValueError("derive_session_keys takes a 32-byte secret and transcript hash")
    okm: bytes = nacl.bindings.crypto_generichash_blake2b_salt_personal(
        transcript, digest_size=2 * SESSION_KEY_SIZE, key=shared_secret, person=_SESSION_PERSON
    )
    return SessionKeys(
        dialer_to_listener=okm[:SESSION_KEY_SIZE], listener_to_dialer=okm[SESSION_KEY_SIZE:]
    )
