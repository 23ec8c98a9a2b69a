"""Reading committed state, and the per-block overlay that stages writes on top of it.

``StateView`` is the one thing the state machine needs from the store: ``get``.
``Overlay`` sits over a view for the length of one block. It caches decoded records
(a hot account is decoded once per block, not once per transaction), lets later
transactions see the writes of earlier ones, and at the end turns the staged records
into the block's *net* writes: sorted by key, encoded once, and only where the final
bytes differ from what the view held before the block. Transactions stage their writes
with ``commit`` only once they are known to be valid, so a rejected transaction leaves
the overlay untouched.

``MemoryState`` is a dict-backed view for tests, the demo and tools.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol, TypeVar, cast

from p2pledger import codec
from p2pledger.errors import CodecError
from p2pledger.state.errors import CorruptState

__all__ = ["MemoryState", "Overlay", "Record", "StateView", "Writes", "decode_stored"]

R = TypeVar("R")


class StateView(Protocol):
    """Read access to the committed state (the store's LMDB map, or a dict)."""

    def get(self, key: bytes) -> bytes | None: ...


class Record(Protocol):
    """A stored record: turns itself into a value of the codec's data model."""

    def to_value(self) -> codec.Value: ...


#: What an operation stages: key -> new record, or None to delete the key.
Writes = dict[bytes, Record | None]


def decode_stored(raw: bytes, what: str) -> Any:
    """Decode a stored value; a failure means the state is corrupt, not the input."""
    try:
        return codec.decode(raw)
    except CodecError as exc:
        raise CorruptState(f"stored {what} does not decode: {exc}") from exc


class Overlay:
    """One block's view of the state: the committed view plus the writes so far."""

    __slots__ = ("_current", "_dirty", "_original", "_view")

    def __init__(self, view: StateView) -> None:
        self._view = view
        self._current: dict[bytes, Any] = {}
        self._original: dict[bytes, bytes | None] = {}
        self._dirty: set[bytes] = set()

    def load(self, key: bytes, decode: Callable[[bytes], R]) -> R | None:
        """The record at ``key`` as of now (None when absent), decoded by ``decode``.

        A key holds one kind of record, so one key is always read with one decoder.
        """
        try:
            return cast("R | None", self._current[key])
        except KeyError:
            pass
        raw = self._view.get(key)
        value = None if raw is None else decode(raw)
        self._original[key] = raw
        self._current[key] = value
        return value

    def commit(self, writes: Writes) -> None:
        """Stage the writes of one valid transaction."""
        self._current.update(writes)
        self._dirty.update(writes)

    def net_writes(self) -> dict[bytes, bytes | None]:
        """The block's net writes, sorted by key, encoded; unchanged keys left out."""
        out: dict[bytes, bytes | None] = {}
        for key in sorted(self._dirty):
            record: Record | None = self._current[key]
            raw = None if record is None else codec.encode(record.to_value())
            before = self._original[key] if key in self._original else self._view.get(key)
            if raw != before:
                out[key] = raw
        return out


class MemoryState:
    """A ``StateView`` over a dict, with the store's job of applying net writes."""

    def __init__(self, items: Mapping[bytes, bytes] | None = None) -> None:
        self._data: dict[bytes, bytes] = dict(items or {})

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def apply(self, writes: Mapping[bytes, bytes | None]) -> None:
        """Persist a block's writes (None deletes), as the store does in one txn."""
        for key, value in writes.items():
            if value is None:
                self._data.pop(key, None)
            else:
                self._data[key] = value

    def put(self, key: bytes, value: bytes) -> None:
        """Set one raw value (for tests and tools that build a state by hand)."""
        self._data[key] = value

    def scan(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value) whose key starts with ``prefix``, in key order."""
        for key in sorted(self._data):
            if key.startswith(prefix):
                yield key, self._data[key]

    def snapshot(self) -> dict[bytes, bytes]:
        """A copy of the whole map (to compare two states)."""
        return dict(self._data)

    def __len__(self) -> int:
        return len(self._data)
