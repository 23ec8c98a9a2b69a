"""The exception tree of p2pledger.

Every failure a user or a peer can cause has its own class with a message that says
what is wrong and, where it helps, how to fix it. ``LocalError`` is "we (or our
operator) did something wrong"; ``RemoteError`` is "the input we were given is bad".
Nothing in the project compares error strings: callers catch these classes.
"""

from __future__ import annotations

from dataclasses import dataclass


class P2PLedgerError(Exception):
    """Base of every error p2pledger raises on purpose."""


class LocalError(P2PLedgerError):
    """The operator's own setup is wrong (files, permissions, configuration)."""


class RemoteError(P2PLedgerError):
    """Input from outside (a peer, a client, a file) is malformed or invalid."""


# --- codec -------------------------------------------------------------------------


class CodecError(RemoteError):
    """Bytes are not a valid, canonical p2pledger CBOR encoding."""


class EncodedTooLarge(CodecError):
    """The encoding is longer than the configured maximum."""


class TruncatedInput(CodecError):
    """The input ends in the middle of an item."""


class TrailingBytes(CodecError):
    """Bytes follow the end of the single top-level item."""


class NestingTooDeep(CodecError):
    """Arrays and maps are nested deeper than the maximum depth."""


class IndefiniteLength(CodecError):
    """An indefinite-length item was found; deterministic CBOR forbids them."""


class DuplicateKey(CodecError):
    """A map repeats a key."""


class UnknownTag(CodecError):
    """A CBOR tag that the protocol does not define."""


class UnsupportedType(CodecError):
    """A value whose type is outside the protocol's allow-list."""


class NonCanonical(CodecError):
    """The bytes decode, but are not the deterministic encoding of their value."""


class MalformedInput(CodecError):
    """The bytes are not well-formed CBOR."""


class SchemaError(RemoteError):
    """A decoded value does not have the shape the protocol expects."""


# --- crypto ------------------------------------------------------------------------


class CryptoError(P2PLedgerError):
    """Base of key and signature errors."""


class BadSignature(CryptoError, RemoteError):
    """An Ed25519 signature does not verify under the claimed key."""


class MalformedKey(CryptoError, RemoteError):
    """Bytes or text that should be a key are not one."""


class KeyFileError(CryptoError, LocalError):
    """A key file cannot be read, written or trusted."""


class InsecureKeyFile(KeyFileError):
    """A private key file is readable by the group or by others."""


# --- chain -------------------------------------------------------------------------


class ChainError(RemoteError):
    """A block or transaction breaks a rule of the chain."""


class InvalidTransaction(ChainError):
    """A transaction is malformed or badly signed."""


class InvalidBlock(ChainError):
    """A block does not validate; ``reason`` is a stable machine-readable code."""

    def __init__(self, reason: str, detail: str, height: int | None = None) -> None:
        where = f"block {height}: " if height is not None else ""
        super().__init__(f"{where}{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.height = height


class ProofError(ChainError):
    """A Merkle proof or receipt does not verify."""


# --- config ------------------------------------------------------------------------


class ConfigError(LocalError):
    """A configuration file has one or more problems, all listed in the message."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = tuple(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        noun = "problem" if len(self.problems) == 1 else "problems"
        super().__init__(f"{len(self.problems)} configuration {noun}:\n{lines}")


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One problem in a configuration file: where it is and what is wrong."""

    file: str
    key: str
    reason: str

    def __str__(self) -> str:
        key = f" [{self.key}]" if self.key else ""
        return f"{self.file}{key}: {self.reason}"


# --- store -------------------------------------------------------------------------


class StoreError(LocalError):
    """The ledger store cannot be opened or used."""


class StoreLocked(StoreError):
    """Another process has the data directory open."""


class StoreFormatError(StoreError):
    """The data directory has an unknown format version or belongs to another chain."""


class NotFound(StoreError):
    """A block or transaction asked for is not in the store."""


class BlockRejected(StoreError):
    """A block offered to the store does not chain onto its tip."""
