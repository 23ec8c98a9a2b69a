"""An authenticated, encrypted message channel over a trio Stream (like trio's SSLStream).

``SecureChannel`` wraps any ``trio.abc.Stream`` (a TCP stream, a memory stream in
tests or netsim) and a sans-I/O ``Handshake``. ``do_handshake`` drives the handshake
under its timeout; afterwards the channel is a ``trio.abc.Channel[bytes]``: each
``send`` seals one frame, ``send_many`` seals several and writes them in one call
(batching), ``receive`` returns the next authenticated frame's plaintext.

Failure semantics follow SSLStream: a transport failure raises
``trio.BrokenResourceError``; a peer's protocol violation (a frame over the maximum, a
frame that fails authentication, EOF inside a frame) raises a ``RemoteProtocolError``
subclass; after either, or after a cancelled write (which may have left half a frame
on the wire), every further call raises ``trio.BrokenResourceError``. The owner closes
the channel. A clean EOF between frames is ``trio.EndOfChannel``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import trio

from p2pledger.crypto.aead import TAG_SIZE, DecryptionFailed, NonceLimitReached, Opener, Sealer
from p2pledger.membership import Member
from p2pledger.wire.config import TransportConfig
from p2pledger.wire.errors import (
    FrameAuthFailed,
    HandshakeRefused,
    LocalProtocolError,
    MessageTooLarge,
    RefusalReason,
    SessionExhausted,
    TruncatedFrame,
)
from p2pledger.wire.framing import FrameReader, frame_header
from p2pledger.wire.handshake import Handshake, HandshakeState, Side

__all__ = ["Admit", "ChannelStatistics", "SecureChannel"]

#: The listener's admission decision for an authenticated member: None to accept, or
#: the reason to refuse (the dialer is told it).
Admit = Callable[[Member], RefusalReason | None]


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelStatistics:
    frames_sent: int
    frames_received: int
    bytes_sent: int
    bytes_received: int
    writes: int


class SecureChannel(trio.abc.Channel[bytes]):
    """Frames sealed with per-direction keys and counter nonces, over ``transport_stream``."""

    def __init__(
        self,
        transport_stream: trio.abc.Stream,
        handshake: Handshake,
        *,
        config: TransportConfig,
    ) -> None:
        if handshake.state is not HandshakeState.AWAIT_HELLO:
            raise LocalProtocolError("a channel needs a handshake that has not started")
        self.transport_stream = transport_stream
        self._handshake = handshake
        self._config = config
        self._max_frame = config.max_frame_size
        self._sealer: Sealer | None = None
        self._opener: Opener | None = None
        self._reader: FrameReader | None = None
        self._peer: Member | None = None
        self._transcript = b""
        self._handshake_started = False
        self._broken = False
        self._closed = False
        self._sending = False
        self._receiving = False
        self._frames_sent = 0
        self._frames_received = 0
        self._bytes_sent = 0
        self._bytes_received = 0
        self._writes = 0

    # --- handshake ----------------------------------------------------------------

    @property
    def side(self) -> Side:
        return self._handshake.side

    @property
    def peer(self) -> Member:
        """The authenticated member at the other end (after ``do_handshake``)."""
        if self._peer is None:
            raise LocalProtocolError("the handshake has not completed")
        return self._peer

    @property
    def transcript(self) -> bytes:
        """The handshake's transcript hash: the same on both ends, unique per session."""
        return self._transcript

    async def do_handshake(self, admit: Admit | None = None) -> Member:
        """Run the handshake within ``handshake_timeout``; return the peer member.

        The listener asks ``admit`` once the dialer is authenticated. On any refusal
        the transport stream is closed and HandshakeRefused is raised.
        """
        if self._handshake_started:
            raise LocalProtocolError("do_handshake is called once")
        self._handshake_started = True
        try:
            with trio.fail_after(self._config.handshake_timeout):
                await self._run_handshake(admit)
        except trio.TooSlowError as exc:
            await self._abort()
            raise HandshakeRefused(
                RefusalReason.TIMEOUT,
                f"no handshake within {self._config.handshake_timeout} s",
            ) from exc
        except trio.BrokenResourceError as exc:
            await self._abort()
            raise HandshakeRefused(RefusalReason.CLOSED, "the connection broke") from exc
        except BaseException:
            await self._abort()
            raise
        return self.peer

    async def _run_handshake(self, admit: Admit | None) -> None:
        hs = self._handshake
        await self._flush_handshake()
        while hs.state is not HandshakeState.DONE:
            if hs.state is HandshakeState.NEED_VERDICT:
                reason = admit(hs.peer) if admit is not None else None
                if reason is None:
                    hs.accept()
                    await self._flush_handshake()
                    continue
                refusal = hs.reject(reason)
                await self._flush_handshake()
                raise refusal
            data = await self.transport_stream.receive_some(self._config.read_size)
            if not data:
                raise HandshakeRefused(
                    RefusalReason.CLOSED, "the peer closed the connection during the handshake"
                )
            self._bytes_received += len(data)
            hs.receive_data(data)
            await self._flush_handshake()
        result = hs.result()
        self._peer = result.peer
        self._transcript = result.transcript
        self._sealer = result.sealer
        self._opener = result.opener
        self._reader = FrameReader(self._max_frame + TAG_SIZE, result.leftover)

    async def _flush_handshake(self) -> None:
        data = self._handshake.data_to_send()
        if data:
            self._bytes_sent += len(data)
            await self.transport_stream.send_all(data)

    async def _abort(self) -> None:
        self._broken = True
        await trio.aclose_forcefully(self.transport_stream)

    # --- messages -----------------------------------------------------------------

    async def send(self, value: bytes) -> None:
        """Seal and write one frame."""
        await self.send_many((value,))

    async def send_many(self, values: Sequence[bytes]) -> None:
        """Seal every value as its own frame and write them all in one call."""
        sealer = self._ready_to_send()
        for value in values:
            if len(value) > self._max_frame:
                raise MessageTooLarge(
                    f"a frame of {len(value)} bytes is over the maximum of {self._max_frame}"
                )
        self._sending = True
        try:
            out = bytearray()
            for value in values:
                header = frame_header(len(value) + TAG_SIZE)
                try:
                    sealed = sealer.seal(value, header)
                except NonceLimitReached as exc:
                    self._broken = True
                    raise SessionExhausted(str(exc)) from exc
                out += header
                out += sealed
            try:
                await self.transport_stream.send_all(out)
            except BaseException:
                self._broken = True  # part of a frame may be on the wire
                raise
            self._frames_sent += len(values)
            self._bytes_sent += len(out)
            self._writes += 1
        finally:
            self._sending = False

    async def receive(self) -> bytes:
        """The next frame's plaintext; EndOfChannel when the peer closed cleanly."""
        reader, opener = self._ready_to_receive()
        self._receiving = True
        try:
            while True:
                try:
                    body = reader.next_frame()
                except BaseException:
                    self._broken = True
                    raise
                if body is not None:
                    try:
                        plain = opener.open(body, frame_header(len(body)))
                    except DecryptionFailed as exc:
                        self._broken = True
                        raise FrameAuthFailed(str(exc)) from exc
                    self._frames_received += 1
                    return plain
                try:
                    data = await self.transport_stream.receive_some(self._config.read_size)
                except trio.BrokenResourceError:
                    self._broken = True
                    raise
                if not data:
                    if reader.buffered:
                        self._broken = True
                        raise TruncatedFrame(
                            f"the peer closed the connection with {reader.buffered} bytes "
                            "of a frame unsent"
                        )
                    raise trio.EndOfChannel
                self._bytes_received += len(data)
                reader.receive_data(data)
        finally:
            self._receiving = False

    async def aclose(self) -> None:
        """Close the transport stream (idempotent)."""
        self._closed = True
        await self.transport_stream.aclose()

    @property
    def frames_left(self) -> int:
        """Frames this session may still send before its nonce space is used up."""
        if self._sealer is None:
            return 0
        return self._sealer.limit - self._sealer.counter

    def statistics(self) -> ChannelStatistics:
        return ChannelStatistics(
            frames_sent=self._frames_sent,
            frames_received=self._frames_received,
            bytes_sent=self._bytes_sent,
            bytes_received=self._bytes_received,
            writes=self._writes,
        )

    # --- state checks -------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the channel is closed")
        if self._broken:
            raise trio.BrokenResourceError("the channel failed earlier")

    def _ready_to_send(self) -> Sealer:
        self._check_usable()
        if self._sealer is None:
            raise LocalProtocolError("send before the handshake completed")
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this channel")
        return self._sealer

    def _ready_to_receive(self) -> tuple[FrameReader, Opener]:
        self._check_usable()
        if self._reader is None or self._opener is None:
            raise LocalProtocolError("receive before the handshake completed")
        if self._receiving:
            raise trio.BusyResourceError("another task is receiving on this channel")
        return self._reader, self._opener
