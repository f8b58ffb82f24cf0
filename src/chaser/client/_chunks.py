"""Bodies the SDK streams: bytes, iterables of bytes and binary files, in bounded chunks."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import BinaryIO, Union

CHUNK_BYTES = 256 * 1024

StdinSource = Union[bytes, Iterable[bytes], BinaryIO]
AsyncStdinSource = Union[bytes, Iterable[bytes], AsyncIterable[bytes], BinaryIO]


def _file_chunks(f: BinaryIO) -> Iterator[bytes]:
    while chunk := f.read(CHUNK_BYTES):
        yield chunk


def chunked(source: StdinSource) -> bytes | Iterator[bytes]:
    """`source` as httpx streams it: bytes whole, files and iterables chunk by chunk
    (read only as fast as the connection takes them)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if hasattr(source, "read"):
        return _file_chunks(source)  # type: ignore[arg-type]
    return iter(source)


async def _aiter(source: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in source:
        yield chunk


def achunked(source: AsyncStdinSource) -> bytes | AsyncIterator[bytes]:
    """`source` as httpx's async client streams it."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if isinstance(source, AsyncIterable):
        return aiter(source)
    if hasattr(source, "read"):
        return _aiter(_file_chunks(source))  # type: ignore[arg-type]
    return _aiter(source)
