"""A build's context as it streams to its node: its start is read ahead to learn which
images the Dockerfile builds `FROM`, so the build can go where they already are."""

from __future__ import annotations

import io
import re
import tarfile
import zlib
from collections.abc import AsyncIterable, AsyncIterator

# How much of the context is read ahead looking for the Dockerfile. The docker CLI puts
# the Dockerfile near the start of the tar; beyond this the bases stay unknown.
PEEK_LIMIT = 1024 * 1024

_FROM = re.compile(r"^\s*FROM\s+(.*)$", re.IGNORECASE)
_CONTINUATION = re.compile(r"\\\s*\n")


def base_images(dockerfile: str) -> list[str]:
    """The images the Dockerfile builds `FROM`, without `scratch`, earlier stages and
    references that need build arguments to be known."""
    stages: set[str] = set()
    bases: list[str] = []
    for line in _CONTINUATION.sub(" ", dockerfile).splitlines():
        match = _FROM.match(line)
        if not match:
            continue
        words = [w for w in match.group(1).split() if not w.startswith("--")]
        if not words:
            continue
        image = words[0]
        if len(words) >= 3 and words[1].lower() == "as":
            stages.add(words[2].lower())
        if image.lower() in stages or image == "scratch" or "$" in image or image in bases:
            continue
        bases.append(image)
    return bases


def dockerfile_in(prefix: bytes, name: str) -> str | None:
    """The Dockerfile's text if the start of a context tar holds all of it."""
    wanted = name.removeprefix("./")
    try:
        with tarfile.open(fileobj=io.BytesIO(prefix), mode="r|*") as tar:
            for member in tar:
                if member.name.removeprefix("./") != wanted:
                    continue
                data = tar.extractfile(member)
                return None if data is None else data.read().decode(errors="replace")
    except (tarfile.TarError, EOFError, OSError, ValueError, TypeError, zlib.error):
        # A cut or odd context (tarfile's gzip reader fails on a header cut short with a
        # TypeError): the bases are then unknown, which only costs a placement preference.
        return None
    return None


class BuildContext:
    """A context stream, with the look-ahead that `base_images()` took given back first by
    `body()`: nothing is lost, and no more than PEEK_LIMIT is ever held."""

    def __init__(self, source: AsyncIterable[bytes], dockerfile: str) -> None:
        self._source = aiter(source)
        self._dockerfile = dockerfile
        self._peeked: list[bytes] = []

    async def base_images(self) -> list[str]:
        size = 0
        async for chunk in self._source:
            self._peeked.append(chunk)
            size += len(chunk)
            if size >= PEEK_LIMIT:
                break
        text = dockerfile_in(b"".join(self._peeked), self._dockerfile)
        return [] if text is None else base_images(text)

    async def body(self) -> AsyncIterator[bytes]:
        for chunk in self._peeked:
            yield chunk
        self._peeked = []
        async for chunk in self._source:
            yield chunk
