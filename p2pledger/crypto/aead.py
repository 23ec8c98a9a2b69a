"""Authenticated encryption of transport frames: XChaCha20-Poly1305 (IETF) with counters.

Why here: ``p2pledger.crypto`` is the only package that imports PyNaCl; the wire layer
seals and opens frames through ``Sealer`` and ``Opener`` only.

Each direction of a connection has its own key (see ``kx.derive_session_keys``) and its
own message counter, which is the nonce (little-endian in the first 8 of the 24 nonce
bytes). A key is used by exactly one ``Sealer`` and one ``Opener``, so a nonce never
repeats under a key: ``Sealer.seal`` refuses to go past ``limit`` messages and the
session must be torn down and a new one made. The opener only accepts the next counter
value, so reordered, replayed or dropped frames fail authentication.
"""

from __future__ import annotations

from typing import Final

import nacl.bindings
import nacl.exceptions

from p2pledger.errors import CryptoError, LocalError, RemoteError

__all__ = [
    "KEY_SIZE",
    "MAX_MESSAGES",
    "TAG_SIZE",
    "DecryptionFailed",
    "NonceLimitReached",
    "Opener",
    "Sealer",
]

KEY_SIZE: Final = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_KEYBYTES
TAG_SIZE: Final = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_ABYTES
NONCE_SIZE: Final = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#: The counter is 64 bits, so at most this many messages are sealed under one key.
MAX_MESSAGES: Final = 2**64 - 1
_PAD: Final = bytes(NONCE_SIZE - 8)


class DecryptionFailed(CryptoError, RemoteError):
    """A ciphertext does not authenticate under the expected key and counter."""


class NonceLimitReached(CryptoError, LocalError):
    """This key has sealed ``limit`` messages; another would risk reusing a nonce."""


def _checked_encrypt(message: bytes, aad: bytes, nonce: bytes, key: bytes) -> bytes:
    out: bytes = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(message, aad, nonce, key)
    return out


def _checked_decrypt(ciphertext: bytes, aad: bytes, nonce: bytes, key: bytes) -> bytes:
    try:
        out: bytes = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
            ciphertext, aad, nonce, key
        )
    except nacl.exceptions.CryptoError as exc:
        raise DecryptionFailed("a frame failed authentication") from exc
    return out


try:
    # The cffi library under nacl.bindings: the same libsodium functions without
    # nacl.bindings' per-call argument checks, which cost several times the cipher
    # itself on small frames. Our arguments are checked once, when a Sealer or Opener
    # is made, and every length below comes from len().
    from nacl._sodium import ffi as _ffi  # type: ignore[import-not-found]
    from nacl._sodium import lib as _lib
except ImportError:  # pragma: no cover - PyNaCl always ships it; keep the checked path
    _encrypt, _decrypt = _checked_encrypt, _checked_decrypt
else:
    _alloc = _ffi.new_allocator(should_clear_after_alloc=False)

    def _fast_encrypt(message: bytes, aad: bytes, nonce: bytes, key: bytes) -> bytes:
        out = _alloc("unsigned char[]", len(message) + TAG_SIZE)
        out_len = _ffi.new("unsigned long long *")
        rc = _lib.crypto_aead_xchacha20poly1305_ietf_encrypt(
            out, out_len, message, len(message), aad, len(aad), _ffi.NULL, nonce, key
        )
        if rc != 0:  # pragma: no cover - cannot fail for valid lengths
            raise CryptoError("libsodium failed to encrypt")
        return bytes(_ffi.buffer(out, out_len[0]))

    def _fast_decrypt(ciphertext: bytes, aad: bytes, nonce: bytes, key: bytes) -> bytes:
        out = _alloc("unsigned char[]", max(1, len(ciphertext) - TAG_SIZE))
        out_len = _ffi.new("unsigned long long *")
        rc = _lib.crypto_aead_xchacha20poly1305_ietf_decrypt(
            out, out_len, _ffi.NULL, ciphertext, len(ciphertext), aad, len(aad), nonce, key
        )
        if rc != 0:
            raise DecryptionFailed("a frame failed authentication")
        return bytes(_ffi.buffer(out, out_len[0]))

    _encrypt, _decrypt = _fast_encrypt, _fast_decrypt


def _check(key: bytes, limit: int) -> None:
    if len(key) != KEY_SIZE:
        raise ValueError(f"an AEAD key is {KEY_SIZE} bytes")
    if not 0 < limit <= MAX_MESSAGES:
        raise ValueError(f"the message limit is between 1 and {MAX_MESSAGES}")


class Sealer:
    """Seals the messages of one direction, numbering them 0, 1, 2, ..."""

    __slots__ = ("_key", "counter", "limit")

    def __init__(self, key: bytes, *, limit: int = MAX_MESSAGES) -> None:
        _check(key, limit)
        self._key = key
        self.limit = limit
        self.counter = 0

    def seal(self, plaintext: bytes, associated: bytes = b"") -> bytes:
        """``plaintext`` encrypted and tagged; ``associated`` is authenticated only."""
        if self.counter >= self.limit:
            raise NonceLimitReached(
                f"{self.counter} messages sealed under this key; start a new session"
            )
        nonce = self.counter.to_bytes(8, "little") + _PAD
        out = _encrypt(bytes(plaintext), bytes(associated), nonce, self._key)
        self.counter += 1
        return out

    def __repr__(self) -> str:
        return f"Sealer(counter={self.counter})"


class Opener:
    """Opens the messages of one direction, in order; any gap or change fails."""

    __slots__ = ("_key", "counter", "limit")

    def __init__(self, key: bytes, *, limit: int = MAX_MESSAGES) -> None:
        _check(key, limit)
        self._key = key
        self.limit = limit
        self.counter = 0

    def open(self, ciphertext: bytes, associated: bytes = b"") -> bytes:
        """The plaintext, or DecryptionFailed; the counter advances only on success."""
        if self.counter >= self.limit:
            raise DecryptionFailed("the peer sealed more messages than the session allows")
        if len(ciphertext) < TAG_SIZE:
            raise DecryptionFailed(f"a ciphertext is at least {TAG_SIZE} bytes")
        nonce = self.counter.to_bytes(8, "little") + _PAD
        out = _decrypt(bytes(ciphertext), bytes(associated), nonce, self._key)
        self.counter += 1
        return out

    def __repr__(self) -> str:
        return f"Opener(counter={self.counter})"
