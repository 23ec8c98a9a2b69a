"""Sans-I/O length-prefixed framing: ``encode_frame`` and an incremental ``FrameReader``.

A frame is a 4-byte big-endian length followed by that many bytes. The reader checks
the announced length against its maximum as soon as the 4 header bytes are in, before
any body is buffered, so a peer cannot make us allocate for a huge frame. It never
touches a socket: the caller feeds bytes in and takes frames out (like h11).

Sealed frames (``channel``, ``handshake``) use the same layout with an AEAD ciphertext
as the body and the header as associated data.
"""

from __future__ import annotations

from typing import Final

from p2pledger.wire.errors import FrameTooLarge

__all__ = ["HEADER_SIZE", "FrameReader", "encode_frame", "frame_header"]

HEADER_SIZE: Final = 4
_MAX_LENGTH: Final = 2**32 - 1


def frame_header(length: int) -> bytes:
    """The 4-byte header of a frame whose body is ``length`` bytes."""
    if not 0 <= length <= _MAX_LENGTH:
        raise ValueError(f"a frame body is at most {_MAX_LENGTH} bytes")
    return length.to_bytes(HEADER_SIZE, "big")


def encode_frame(body: bytes) -> bytes:
    """``body`` with its length header."""
    return frame_header(len(body)) + body


class FrameReader:
    """Splits a byte stream into frame bodies of at most ``max_body`` bytes each."""

    __slots__ = ("_buf", "max_body")

    def __init__(self, max_body: int, initial: bytes = b"") -> None:
        if not 0 < max_body <= _MAX_LENGTH:
            raise ValueError("max_body must be positive and fit in the header")
        self.max_body = max_body
        self._buf = bytearray(initial)

    def receive_data(self, data: bytes | bytearray) -> None:
        """Append bytes read from the peer."""
        self._buf += data

    def next_frame(self) -> bytes | None:
        """The next complete frame body, or None until more data arrives.

        Raises FrameTooLarge as soon as a header announces more than ``max_body``; the
        buffer is then left as it was (the connection must be closed anyway).
        """
        buf = self._buf
        if len(buf) < HEADER_SIZE:
            return None
        length = int.from_bytes(buf[:HEADER_SIZE], "big")
        if length > self.max_body:
            raise FrameTooLarge(
                f"frame of {length} bytes announced, the maximum is {self.max_body}"
            )
        end = HEADER_SIZE + length
        if len(buf) < end:
            return None
        body = bytes(buf[HEADER_SIZE:end])
        del buf[:end]
        return body

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as frames."""
        return len(self._buf)

    def take_buffered(self) -> bytes:
        """Remove and return every buffered byte (to hand the stream to another reader)."""
        out = bytes(self._buf)
        self._buf.clear()
        return out
