"""swarmproxy.cluster.build: the images a build's Dockerfile starts `FROM`, read ahead from
its context stream without losing a byte of it."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from collections.abc import AsyncIterator

import pytest

from swarmproxy.cluster.build import PEEK_LIMIT, BuildContext, base_images, dockerfile_in

# --- base_images ----------------------------------------------------------------------------


def test_single_base() -> None:
    """The one image a plain Dockerfile builds from."""
    assert base_images("FROM alpine:3.19\nRUN echo hi\n") == ["alpine:3.19"]


def test_multi_stage_skips_earlier_stages() -> None:
    """`FROM x AS y` then `FROM y`: y is a stage, not an image; every real base is kept, in
    order."""
    dockerfile = """\
FROM golang:1.22 AS build
RUN go build -o /app .
FROM build AS test
RUN go test ./...
FROM gcr.io/distroless/static:nonroot
COPY --from=build /app /app
"""
    assert base_images(dockerfile) == ["golang:1.22", "gcr.io/distroless/static:nonroot"]


def test_stage_names_and_keywords_are_case_insensitive() -> None:
    """`from`/`as` in any case, and a stage named `Build` referred to as `BUILD`."""
    dockerfile = "from node:20 As Build\nRUN npm ci\nFrom BUILD\nfRoM nginx\n"
    assert base_images(dockerfile) == ["node:20", "nginx"]


def test_platform_flags_are_skipped() -> None:
    """`--platform=...` before the image is not the image."""
    dockerfile = (
        "FROM --platform=$BUILDPLATFORM golang:1.22 AS build\nFROM --platform=linux/arm64 alpine\n"
    )
    assert base_images(dockerfile) == ["golang:1.22", "alpine"]


def test_scratch_is_no_image() -> None:
    """`scratch` is the empty image, never pulled."""
    assert base_images("FROM scratch\nCOPY app /\n") == []
    assert base_images("FROM alpine AS certs\nFROM scratch\n") == ["alpine"]


@pytest.mark.parametrize(
    "reference", ["$BASE", "${BASE}", "${BASE:-alpine}", "alpine:$TAG", "registry/${NAME}:1"]
)
def test_references_needing_build_args_are_skipped(reference: str) -> None:
    """An image named through a build argument is not known before the build."""
    dockerfile = f"ARG BASE=alpine\nARG TAG=3\nARG NAME=x\nFROM {reference}\nFROM busybox\n"
    assert base_images(dockerfile) == ["busybox"]


def test_line_continuations_are_joined() -> None:
    """A FROM split over lines with backslashes is read as one instruction."""
    dockerfile = "FROM \\\n    --platform=linux/amd64 \\\n    python:3.12-slim \\\n    AS base\n"
    dockerfile += "FROM base\n"
    assert base_images(dockerfile) == ["python:3.12-slim"]


def test_a_continued_line_starting_with_from_is_no_instruction() -> None:
    """A `FROM` word that continues another instruction (a RUN's shell text) is not one."""
    dockerfile = "FROM alpine\nRUN echo building \\\nFROM elsewhere\n"
    assert base_images(dockerfile) == ["alpine"]


def test_duplicates_are_given_once() -> None:
    """The same base in several stages is one image."""
    dockerfile = "FROM alpine AS a\nFROM alpine AS b\nFROM debian\nFROM alpine\n"
    assert base_images(dockerfile) == ["alpine", "debian"]


def test_comments_and_other_instructions_are_ignored() -> None:
    """Comments, blank lines and other instructions name no base; digests are kept whole."""
    digest = "alpine@sha256:" + "c" * 64
    dockerfile = f"# syntax=docker/dockerfile:1\n\n# FROM commented\n  FROM {digest}\nRUN x\n"
    assert base_images(dockerfile) == [digest]
    assert base_images("") == []
    assert base_images("FROM\n") == []


# --- dockerfile_in --------------------------------------------------------------------------


DOCKERFILE = "FROM alpine\nRUN echo hi\n"


def tar_of(*files: tuple[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_dockerfile_found_in_the_context() -> None:
    """The Dockerfile's text, wherever it is among the context's first files."""
    context = tar_of(("app.py", b"print(1)\n"), ("Dockerfile", DOCKERFILE.encode()))
    assert dockerfile_in(context, "Dockerfile") == DOCKERFILE


def test_dockerfile_under_a_custom_name() -> None:
    """`-f build/Custom.dockerfile`: that file, not the Dockerfile beside it."""
    context = tar_of(
        ("Dockerfile", b"FROM wrong\n"), ("build/Custom.dockerfile", DOCKERFILE.encode())
    )
    assert dockerfile_in(context, "build/Custom.dockerfile") == DOCKERFILE
    assert dockerfile_in(context, "./build/Custom.dockerfile") == DOCKERFILE


def test_dockerfile_with_dot_slash_member_names() -> None:
    """A tar whose members are named `./...` (as `tar -C dir .` makes them)."""
    context = tar_of(("./Dockerfile", DOCKERFILE.encode()))
    assert dockerfile_in(context, "Dockerfile") == DOCKERFILE


def test_no_such_dockerfile() -> None:
    """A context without the file, or not a tar at all: None."""
    assert dockerfile_in(tar_of(("app.py", b"x")), "Dockerfile") is None
    assert dockerfile_in(b"this is not a tar archive" * 40, "Dockerfile") is None
    assert dockerfile_in(b"", "Dockerfile") is None


def test_truncated_context_never_gives_a_partial_dockerfile() -> None:
    """Cut anywhere, the start of a context gives the whole Dockerfile or None, never part
    of it."""
    text = "FROM alpine\n" + "RUN echo step\n" * 300
    context = tar_of(("Dockerfile", text.encode()), ("app.bin", os.urandom(3000)))
    outcomes = {dockerfile_in(context[:cut], "Dockerfile") for cut in range(len(context) + 1)}
    assert outcomes == {None, text}
    # Truncated inside the Dockerfile itself: None.
    assert dockerfile_in(context[: 512 + 100], "Dockerfile") is None


def test_gzip_compressed_context() -> None:
    """A gzip-compressed context (`docker build - < ctx.tar.gz`) is read as well."""
    context = gzip.compress(tar_of(("Dockerfile", DOCKERFILE.encode()), ("a", b"x" * 5000)))
    assert dockerfile_in(context, "Dockerfile") == DOCKERFILE
    # A truncated compressed stream past its header: None, never part of the file.
    outcomes = {dockerfile_in(context[:cut], "Dockerfile") for cut in range(4, len(context) + 1)}
    assert outcomes <= {None, DOCKERFILE}


def test_gzip_header_cut_short_is_no_dockerfile() -> None:
    """A context that is only the start of a gzip header is no Dockerfile, not a crash."""
    assert dockerfile_in(b"\x1f\x8b\x08", "Dockerfile") is None


# --- BuildContext ---------------------------------------------------------------------------


class Source:
    """An upload in chunks, counting how much was taken from it."""

    def __init__(self, data: bytes, chunk: int) -> None:
        self.data = data
        self.chunk = chunk
        self.taken = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self.data), self.chunk):
            part = self.data[start : start + self.chunk]
            self.taken += len(part)
            yield part


async def body_of(context: BuildContext) -> bytes:
    return b"".join([chunk async for chunk in context.body()])


async def test_small_context_is_given_back_whole() -> None:
    """A context smaller than the look-ahead: bases found, then every byte given back."""
    data = tar_of(("Dockerfile", b"FROM golang AS b\nFROM b\nFROM alpine\n"), ("main.go", b"x"))
    context = BuildContext(Source(data, 1000), "Dockerfile")
    assert await context.base_images() == ["golang", "alpine"]
    assert await body_of(context) == data


async def test_large_context_is_given_back_whole_and_not_read_whole_ahead() -> None:
    """A 3 MiB context: bases found from its start, no more than the look-ahead (plus one
    chunk) read before the body is asked for, then exactly the original bytes."""
    data = tar_of(("Dockerfile", b"FROM python:3.12\n"), ("blob", os.urandom(3 * 1024 * 1024)))
    source = Source(data, 64 * 1024)
    context = BuildContext(source, "Dockerfile")
    assert await context.base_images() == ["python:3.12"]
    assert source.taken < PEEK_LIMIT + source.chunk
    body = await body_of(context)
    assert len(body) == len(data)
    assert body == data


async def test_dockerfile_beyond_the_look_ahead_is_unknown() -> None:
    """A Dockerfile after the first MiB: no bases known, and the body still whole."""
    data = tar_of(("blob", os.urandom(2 * 1024 * 1024)), ("Dockerfile", b"FROM alpine\n"))
    context = BuildContext(Source(data, 100_000), "Dockerfile")
    assert await context.base_images() == []
    assert await body_of(context) == data


async def test_body_without_looking_ahead() -> None:
    """body() alone is the context as it came."""
    data = os.urandom(1_500_000)
    assert await body_of(BuildContext(Source(data, 70_000), "Dockerfile")) == data


async def test_gzip_context_is_looked_into_and_given_back_as_sent() -> None:
    """A gzip-compressed context is read for its bases, and passed on still compressed."""
    data = gzip.compress(tar_of(("Dockerfile", b"FROM debian:12\n"), ("x", b"y" * 10_000)))
    context = BuildContext(Source(data, 50), "Dockerfile")
    assert await context.base_images() == ["debian:12"]
    assert await body_of(context) == data
