"""The sans-I/O handshake of the member transport (SecretConnection, weaknesses fixed).

It never touches a socket or a clock: the I/O layer (``channel``) feeds the peer's bytes
to ``receive_data``, sends what ``data_to_send`` returns, asks the peer manager for a
verdict when the state is ``NEED_VERDICT``, and applies the handshake timeout.

How it works (all transitions live in this module)::

    dialer D                                           listener L
    ---- HELLO(magic, version, chain id, eD) -->  <-- HELLO(magic, version, chain id, eL)
         both: check magic, version, chain id (precise refusal), eX not of small
         order, eX not seen before (replay cache); then
         th   = BLAKE2b-256(hello_D || hello_L)          (transcript hash)
         keys = BLAKE2b-512(key = X25519(e, eX), msg = th) -> k_DL, k_LD
                                                   <-- {AUTH(pk_L, sig_L)}k_LD  #0
         D: verify sig_L, L is a current member, L is who D meant to dial
    ---- {AUTH(pk_D, sig_D)}k_DL  #0 -->
                                                         L: verify sig_D, D is a member;
                                                         ask the peer manager (tie-break)
                                                   <-- {VERDICT("" | reason)}k_LD  #1
         D: "" = accepted                                 (L: DONE after sending it)

    sig_X = Ed25519(node key of X, "p2pledger/wire/auth/v1" || side of X || th || pk_X)

States: AWAIT_HELLO -> AWAIT_AUTH -> (dialer) AWAIT_VERDICT -> DONE
                                  -> (listener) NEED_VERDICT -> DONE or FAILED.

- Identities travel only inside the encrypted channel, and the dialer reveals its own
  only after it has checked the listener's, so a passive observer learns no identity
  and an active one learns only the listener's (whose address is public anyway).
- The chain id and protocol version are sent in the clear (so a mismatch is refused
  with its precise reason) and also bound into ``th``, the keys and both signatures.
- Both ephemeral keys are fresh and signed over, so a recorded handshake replayed
  later fails; the replay cache also refuses a repeated ephemeral key outright.
- The side label in the signature stops a signature being reflected back to its
  signer; AEAD counters continue into the channel (AUTH is frame #0).

Every refusal raises ``HandshakeRefused`` (a RemoteError) with a ``RefusalReason`` and
leaves the handshake FAILED. Calling a method in the wrong state raises
``LocalProtocolError`` and changes nothing. Nothing after the handshake's own messages
is read: bytes the peer sends early are kept for the channel, undecrypted.
"""

from __future__ import annotations

import enum
from collections.abc import Collection
from dataclasses import dataclass
from typing import Final

from p2pledger.crypto import PUBLIC_KEY_SIZE, SIGNATURE_SIZE, PublicKey, SigningKey
from p2pledger.crypto.aead import MAX_MESSAGES, TAG_SIZE, DecryptionFailed, Opener, Sealer
from p2pledger.crypto.kx import (
    X25519_KEY_SIZE,
    EphemeralKey,
    LowOrderPoint,
    check_public_point,
    derive_session_keys,
    transcript_hash,
)
from p2pledger.errors import BadSignature
from p2pledger.membership import Member, Network
from p2pledger.wire.config import PROTOCOL_VERSION
from p2pledger.wire.errors import (
    FrameTooLarge,
    HandshakeRefused,
    LocalProtocolError,
    RefusalReason,
)
from p2pledger.wire.framing import FrameReader, frame_header
from p2pledger.wire.replay import ReplayCache

__all__ = [
    "CHAIN_ID_SIZE",
    "HELLO_SIZE",
    "MAGIC",
    "Handshake",
    "HandshakeResult",
    "HandshakeState",
    "Side",
    "encode_hello",
]

MAGIC: Final = b"P2PL"
CHAIN_ID_SIZE: Final = 32
_VERSION_SIZE: Final = 2
HELLO_SIZE: Final = len(MAGIC) + _VERSION_SIZE + CHAIN_ID_SIZE + X25519_KEY_SIZE
_AUTH_SIZE: Final = PUBLIC_KEY_SIZE + SIGNATURE_SIZE
_MAX_VERDICT: Final = 64
_AUTH_CONTEXT: Final = b"p2pledger/wire/auth/v1"


class Side(enum.StrEnum):
    """Which end of the TCP connection we are."""

    DIALER = "dialer"
    LISTENER = "listener"


class HandshakeState(enum.Enum):
    AWAIT_HELLO = "await_hello"
    AWAIT_AUTH = "await_auth"
    NEED_VERDICT = "need_verdict"
    AWAIT_VERDICT = "await_verdict"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True, slots=True, kw_only=True)
class HandshakeResult:
    """What a completed handshake hands to the channel."""

    side: Side
    peer: Member
    transcript: bytes
    sealer: Sealer
    opener: Opener
    leftover: bytes

    def __repr__(self) -> str:
        return f"HandshakeResult(side={self.side}, peer={self.peer.name})"


def encode_hello(version: int, chain_id: bytes, ephemeral_public: bytes) -> bytes:
    """The cleartext HELLO: magic, 16-bit version, chain id, X25519 ephemeral key."""
    if len(chain_id) != CHAIN_ID_SIZE or len(ephemeral_public) != X25519_KEY_SIZE:
        raise ValueError("a chain id and an X25519 key are 32 bytes each")
    return MAGIC + version.to_bytes(_VERSION_SIZE, "big") + chain_id + ephemeral_public


def _auth_message(side: Side, transcript: bytes, key: PublicKey) -> bytes:
    return _AUTH_CONTEXT + side.value.encode("ascii") + transcript + key.raw


class Handshake:
    """One side of one handshake. See the module docstring for the message flow."""

    def __init__(
        self,
        *,
        side: Side,
        identity: SigningKey,
        chain_id: bytes,
        network: Network,
        removed_keys: Collection[bytes] = frozenset(),
        expected_peer: PublicKey | None = None,
        ephemeral: EphemeralKey | None = None,
        replay_cache: ReplayCache | None = None,
        version: int = PROTOCOL_VERSION,
        session_message_limit: int = MAX_MESSAGES,
    ) -> None:
        if side is Side.DIALER and expected_peer is None:
            raise LocalProtocolError("a dialer must say which member it means to dial")
        if len(chain_id) != CHAIN_ID_SIZE:
            raise LocalProtocolError(f"a chain id is {CHAIN_ID_SIZE} bytes")
        self.side = side
        self._identity = identity
        self._chain_id = chain_id
        self._network = network
        self._removed = removed_keys
        self._expected = expected_peer
        self._ephemeral = ephemeral if ephemeral is not None else EphemeralKey.generate()
        self._replay = replay_cache if replay_cache is not None else ReplayCache(0)
        self._version = version
        self._limit = session_message_limit
        self._hello = encode_hello(version, chain_id, self._ephemeral.public)
        self._outbox = bytearray(self._hello)
        self._inbox = bytearray()
        self._frames: FrameReader | None = None
        self._transcript = b""
        self._sealer: Sealer | None = None
        self._opener: Opener | None = None
        self._peer: Member | None = None
        self.state = HandshakeState.AWAIT_HELLO
        self.refusal: HandshakeRefused | None = None

    # --- the I/O layer's interface ------------------------------------------------

    def data_to_send(self) -> bytes:
        """Bytes to write to the peer now (empties the outbox)."""
        out = bytes(self._outbox)
        self._outbox.clear()
        return out

    def receive_data(self, data: bytes | bytearray) -> None:
        """Feed bytes read from the peer; advance as far as they allow.

        Raises HandshakeRefused when the peer is refused (the state becomes FAILED).
        """
        if self.state is HandshakeState.FAILED:
            raise LocalProtocolError("the handshake has failed; close the connection")
        if self.state is HandshakeState.DONE:
            raise LocalProtocolError("the handshake is done; the channel reads the stream now")
        if self._frames is None:
            self._inbox += data
        else:
            self._frames.receive_data(data)
        try:
            self._advance()
        except HandshakeRefused as exc:
            self.state = HandshakeState.FAILED
            self.refusal = exc
            self._outbox.clear()
            raise

    @property
    def peer(self) -> Member:
        """The authenticated peer (from NEED_VERDICT or AWAIT_VERDICT on)."""
        if self._peer is None:
            raise LocalProtocolError("the peer is not authenticated yet")
        return self._peer

    def accept(self) -> None:
        """Listener: admit the authenticated dialer; the handshake is DONE."""
        self._send_verdict("")
        self.state = HandshakeState.DONE

    def reject(self, reason: RefusalReason) -> HandshakeRefused:
        """Listener: refuse the authenticated dialer, telling it why (e.g. duplicate).

        Returns the refusal for the caller to raise after flushing the outbox.
        """
        self._send_verdict(reason.value)
        refusal = HandshakeRefused(reason, f"member {self.peer.name} refused by verdict")
        self.state = HandshakeState.FAILED
        self.refusal = refusal
        return refusal

    def result(self) -> HandshakeResult:
        """The session, once DONE."""
        if self.state is not HandshakeState.DONE:
            raise LocalProtocolError(f"the handshake is {self.state.value}, not done")
        assert self._sealer is not None and self._opener is not None and self._frames
        return HandshakeResult(
            side=self.side,
            peer=self.peer,
            transcript=self._transcript,
            sealer=self._sealer,
            opener=self._opener,
            leftover=self._frames.take_buffered(),
        )

    # --- transitions --------------------------------------------------------------

    def _advance(self) -> None:
        if self.state is HandshakeState.AWAIT_HELLO:
            self._receive_hello()
        if self.state is HandshakeState.AWAIT_AUTH:
            body = self._next_frame()
            if body is not None:
                self._receive_auth(body)
        if self.state is HandshakeState.AWAIT_VERDICT:
            body = self._next_frame()
            if body is not None:
                self._receive_verdict(body)

    def _receive_hello(self) -> None:
        data = self._inbox
        head = bytes(data[: len(MAGIC)])
        if not MAGIC.startswith(head):
            raise HandshakeRefused(RefusalReason.MALFORMED_HELLO, "not a p2pledger handshake")
        if len(data) < len(MAGIC) + _VERSION_SIZE:
            return
        version = int.from_bytes(data[len(MAGIC) : len(MAGIC) + _VERSION_SIZE], "big")
        if version != self._version:
            raise HandshakeRefused(
                RefusalReason.WRONG_VERSION,
                f"peer speaks protocol version {version}, we speak {self._version}",
            )
        if len(data) < HELLO_SIZE:
            return
        hello = bytes(data[:HELLO_SIZE])
        rest = bytes(data[HELLO_SIZE:])
        data.clear()
        offset = len(MAGIC) + _VERSION_SIZE
        chain_id = hello[offset : offset + CHAIN_ID_SIZE]
        peer_ephemeral = hello[offset + CHAIN_ID_SIZE :]
        if chain_id != self._chain_id:
            raise HandshakeRefused(
                RefusalReason.WRONG_CHAIN,
                f"peer is on chain {chain_id[:4].hex()}, we are on {self._chain_id[:4].hex()}",
            )
        try:
            check_public_point(peer_ephemeral)
        except LowOrderPoint as exc:
            raise HandshakeRefused(RefusalReason.LOW_ORDER_POINT, str(exc)) from exc
        if peer_ephemeral == self._ephemeral.public or self._replay.check_and_remember(
            peer_ephemeral
        ):
            raise HandshakeRefused(
                RefusalReason.REPLAYED, "the peer's ephemeral key was seen before"
            )
        try:
            shared = self._ephemeral.shared_secret(peer_ephemeral)
        except LowOrderPoint as exc:  # pragma: no cover - check_public_point ran first
            raise HandshakeRefused(RefusalReason.LOW_ORDER_POINT, str(exc)) from exc
        if self.side is Side.DIALER:
            self._transcript = transcript_hash(self._hello, hello)
        else:
            self._transcript = transcript_hash(hello, self._hello)
        keys = derive_session_keys(shared, self._transcript)
        if self.side is Side.DIALER:
            send_key, receive_key = keys.dialer_to_listener, keys.listener_to_dialer
        else:
            send_key, receive_key = keys.listener_to_dialer, keys.dialer_to_listener
        self._sealer = Sealer(send_key, limit=self._limit)
        self._opener = Opener(receive_key, limit=self._limit)
        self._frames = FrameReader(max(_AUTH_SIZE, _MAX_VERDICT) + TAG_SIZE, rest)
        self.state = HandshakeState.AWAIT_AUTH
        if self.side is Side.LISTENER:
            self._send_auth()

    def _receive_auth(self, body: bytes) -> None:
        plain = self._open(body)
        if len(plain) != _AUTH_SIZE:
            raise HandshakeRefused(RefusalReason.MALFORMED_AUTH, "AUTH has the wrong size")
        key = PublicKey(plain[:PUBLIC_KEY_SIZE])
        peer_side = Side.LISTENER if self.side is Side.DIALER else Side.DIALER
        try:
            key.verify(_auth_message(peer_side, self._transcript, key), plain[PUBLIC_KEY_SIZE:])
        except BadSignature as exc:
            raise HandshakeRefused(
                RefusalReason.BAD_SIGNATURE, f"AUTH signature does not verify under {key.short}"
            ) from exc
        self._peer = self._authorize(key)
        if self.side is Side.DIALER:
            self._send_auth()
            self.state = HandshakeState.AWAIT_VERDICT
        else:
            self.state = HandshakeState.NEED_VERDICT

    def _receive_verdict(self, body: bytes) -> None:
        plain = self._open(body)
        if not plain:
            self.state = HandshakeState.DONE
            return
        try:
            reason = RefusalReason(plain.decode("ascii"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise HandshakeRefused(RefusalReason.MALFORMED_AUTH, "unknown verdict") from exc
        raise HandshakeRefused(reason, f"member {self.peer.name} refused the connection")

    def _authorize(self, key: PublicKey) -> Member:
        if key == self._identity.public_key:
            raise HandshakeRefused(RefusalReason.SELF_CONNECTION, "the peer has our own key")
        member = self._network.member_by_node_key(key)
        if member is None:
            if key.raw in self._removed:
                raise HandshakeRefused(
                    RefusalReason.REMOVED_MEMBER, f"key {key.short} belongs to a removed member"
                )
            raise HandshakeRefused(
                RefusalReason.UNKNOWN_KEY, f"key {key.short} is not a member's node key"
            )
        if self._expected is not None and key != self._expected:
            raise HandshakeRefused(
                RefusalReason.UNEXPECTED_PEER,
                f"dialed key {self._expected.short}, reached member {member.name}",
            )
        return member

    # --- helpers ------------------------------------------------------------------

    def _next_frame(self) -> bytes | None:
        assert self._frames is not None
        try:
            return self._frames.next_frame()
        except FrameTooLarge as exc:
            raise HandshakeRefused(RefusalReason.MALFORMED_AUTH, str(exc)) from exc

    def _open(self, body: bytes) -> bytes:
        assert self._opener is not None
        try:
            return self._opener.open(body, frame_header(len(body)))
        except DecryptionFailed as exc:
            raise HandshakeRefused(
                RefusalReason.MALFORMED_AUTH, "a handshake frame failed authentication"
            ) from exc

    def _seal(self, plain: bytes) -> None:
        assert self._sealer is not None
        header = frame_header(len(plain) + TAG_SIZE)
        self._outbox += header + self._sealer.seal(plain, header)

    def _send_auth(self) -> None:
        me = self._identity.public_key
        signature = self._identity.sign(_auth_message(self.side, self._transcript, me))
        self._seal(me.raw + signature)

    def _send_verdict(self, verdict: str) -> None:
        if self.side is not Side.LISTENER or self.state is not HandshakeState.NEED_VERDICT:
            raise LocalProtocolError(
                f"a verdict is given by the listener in need_verdict, not {self.state.value}"
            )
        self._seal(verdict.encode("ascii"))
