"""The sans-I/O frame codec: splitting, limits before allocation, random input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pledger.wire.errors import FrameTooLarge
from p2pledger.wire.framing import FrameReader, encode_frame, frame_header


def test_frames_split_across_reads() -> None:
    data = encode_frame(b"hello") + encode_frame(b"") + encode_frame(b"world!")
    reader = FrameReader(16)
    out = []
    for i in range(len(data)):
        reader.receive_data(data[i : i + 1])
        while (frame := reader.next_frame()) is not None:
            out.append(frame)
    assert out == [b"hello", b"", b"world!"]
    assert reader.buffered == 0


def test_length_checked_before_body_arrives() -> None:
    reader = FrameReader(10)
    reader.receive_data(frame_header(11))  # the header alone is enough to refuse
    with pytest.raises(FrameTooLarge):
        reader.next_frame()
    huge = FrameReader(10)
    huge.receive_data(b"\xff\xff\xff\xff")
    with pytest.raises(FrameTooLarge):
        huge.next_frame()


def test_take_buffered_hands_over_the_rest() -> None:
    reader = FrameReader(10, encode_frame(b"ab") + b"\x00\x00")
    assert reader.next_frame() == b"ab"
    assert reader.take_buffered() == b"\x00\x00"
    assert reader.buffered == 0


@settings(max_examples=300, derandomize=True, database=None)
@given(st.binary(max_size=200), st.integers(min_value=1, max_value=64))
def test_random_bytes_give_frames_or_too_large(data: bytes, chunk: int) -> None:
    reader = FrameReader(32)
    try:
        for i in range(0, len(data), chunk):
            reader.receive_data(data[i : i + chunk])
            while (frame := reader.next_frame()) is not None:
                assert len(frame) <= 32
    except FrameTooLarge:
        pass
