"""Cryptography: the only package that imports PyNaCl.

``signing`` has Ed25519 identities (RFC 8032) and their key files. Later layers add
key exchange and authenticated encryption here, so that one package holds every use
of libsodium.
"""

from p2pledger.crypto.signing import (
    PUBLIC_KEY_SIZE,
    SIGNATURE_SIZE,
    PublicKey,
    SigningKey,
    load_signing_key,
    public_key_from_pem,
    sha256,
    write_signing_key,
)

__all__ = [
    "PUBLIC_KEY_SIZE",
    "SIGNATURE_SIZE",
    "PublicKey",
    "SigningKey",
    "load_signing_key",
    "public_key_from_pem",
    "sha256",
    "write_signing_key",
]
