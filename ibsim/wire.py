"""TWS socket framing (pure).

Every message after the ``API\\0`` prefix is a 4-byte big-endian length followed by fields, each
terminated by a NUL byte. Servers at version >= 153 (MIN_SERVER_VER_ENCODE_MSG_ASCII7) must send
7-bit ASCII: ibapi decodes string fields with ``unicode-escape``, so non-ASCII characters and
backslashes are escaped here.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ibstream.exceptions import IbstreamError

API_PREFIX = b"API\0"
UNSET_INTEGER = 2**31 - 1
UNSET_DOUBLE = 1.7976931348623157e308

Field = str | int | float | bool | None


class ProtocolError(IbstreamError):
    """A peer broke the framing or sent a field that cannot be parsed."""


class FrameTooLargeError(ProtocolError):
    """Declared frame length above the configured maximum."""


def _escape(text: str) -> str:
    if text.isascii() and "\\" not in text:
        return text
    return text.encode("unicode-escape").decode("ascii")


def encode_field(value: Field) -> str:
    """One field in TWS text form (without its terminator).

    ``None``, UNSET_INTEGER and UNSET_DOUBLE become the empty string, which is how TWS marks
    "no value" and what ibapi's ``decode(..., SHOW_UNSET)`` turns back into the UNSET constants.
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        # int() first: IntEnum members must go out as their number, not their name
        return "" if value == UNSET_INTEGER else str(int(value))
    if isinstance(value, float):
        if value == UNSET_DOUBLE or math.isnan(value):
            return ""
        if value == math.inf:
            return "Infinite"
        return repr(value)
    return _escape(value)


def encode_message(fields: Iterable[Field]) -> bytes:
    """A complete length-prefixed frame."""
    payload = "".join(encode_field(f) + "\0" for f in fields).encode("ascii")
    return struct.pack("!I", len(payload)) + payload


def encode_raw(fields: Iterable[str]) -> bytes:
    """Frame pre-encoded text fields verbatim (for sending the exact UNSET literal TWS uses)."""
    payload = "".join(f + "\0" for f in fields).encode("ascii")
    return struct.pack("!I", len(payload)) + payload


def split_fields(payload: bytes) -> list[str]:
    """Fields of one frame payload. The trailing terminator yields no extra field."""
    text = payload.decode("latin-1")
    parts = text.split("\0")
    if parts and parts[-1] == "":
        parts.pop()
    return parts


class FrameDecoder:
    """Incremental decoder for a byte stream of length-prefixed frames."""

    def __init__(self, max_frame: int = 1 << 20) -> None:
        self._buf = bytearray()
        self._max = max_frame

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the payloads of every frame now complete."""
        self._buf += data
        out: list[bytes] = []
        while len(self._buf) >= 4:
            (size,) = struct.unpack_from("!I", self._buf, 0)
            if size > self._max:
                raise FrameTooLargeError(f"frame of {size} bytes exceeds {self._max}")
            if len(self._buf) < 4 + size:
                break
            out.append(bytes(self._buf[4 : 4 + size]))
            del self._buf[: 4 + size]
        return out

    @property
    def pending(self) -> int:
        """Bytes buffered but not yet part of a complete frame."""
        return len(self._buf)


@dataclass
class FieldReader:
    """Sequential typed access to the fields of one inbound message."""

    fields: list[str]
    pos: int = 0
    #: The server version the session negotiated: some messages' layouts depend on it.
    version: int = 0

    def __iter__(self) -> Iterator[str]:
        return iter(self.fields[self.pos :])

    def remaining(self) -> int:
        """Fields not yet consumed."""
        return len(self.fields) - self.pos

    def text(self) -> str:
        """Next field as text (empty if the message ended early, as TWS tolerates)."""
        if self.pos >= len(self.fields):
            return ""
        v = self.fields[self.pos]
        self.pos += 1
        return v

    def integer(self, default: int = 0) -> int:
        """Next field as int; empty means ``default``."""
        v = self.text()
        if v == "":
            return default
        try:
            return int(v)
        except ValueError:
            try:
                f = float(v)
            except ValueError as exc:
                raise ProtocolError(f"field {self.pos - 1}: expected int, got {v!r}") from exc
            if not f.is_integer():
                raise ProtocolError(f"field {self.pos - 1}: expected int, got {v!r}") from None
            return int(f)

    def number(self) -> float | None:
        """Next field as float; empty means unset (``None``)."""
        v = self.text()
        if v == "":
            return None
        try:
            f = float(v)
        except ValueError as exc:
            raise ProtocolError(f"field {self.pos - 1}: expected number, got {v!r}") from exc
        return None if f >= UNSET_DOUBLE else f

    def flag(self) -> bool:
        """Next field as 0/1 flag."""
        return self.integer() != 0

    def skip(self, n: int = 1) -> None:
        """Drop ``n`` fields."""
        self.pos = min(self.pos + n, len(self.fields))


def parse_version_range(text: str) -> tuple[int, int]:
    """``"v100..157"`` or ``"v157..178 +PACEAPI"`` -> ``(100, 157)``; a bare ``"v157"`` also works."""
    token = text.strip().split(" ", 1)[0]
    if not token.startswith("v"):
        raise ProtocolError(f"bad version string {text!r}")
    body = token[1:]
    try:
        if ".." in body:
            lo, hi = body.split("..", 1)
            return int(lo), int(hi)
        v = int(body)
    except ValueError as exc:
        raise ProtocolError(f"bad version string {text!r}") from exc
    return v, v
