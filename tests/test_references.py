"""swarmproxy.cluster.references: image references as an Engine API 1.41 daemon reads them.

The expectations were checked against a dockerd 20.10: a reference it refuses answers 400
to `GET /images/{ref}/json`, and `POST /images/{id}/tag?repo=ref` lists it in `RepoTags`
as `normalize(ref)`.
"""

from __future__ import annotations

import random

import pytest

from swarmproxy.cluster.references import (
    InvalidReference,
    digest_of,
    full_name,
    image_id,
    is_image_id,
    normalize,
    repository,
    with_tag,
)

HEX = "4fec8b8116088c8190404739d8307a90ef12bd486569852ec5ba8992c1c934cc"
ID = f"sha256:{HEX}"
D = "sha256:" + "b" * 64
D2 = "sha256:" + "c" * 64
D512 = "sha512:" + "d" * 128


# --- normalize -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        # Docker Hub names, spelt every way the daemon accepts.
        ("busybox", "busybox:latest"),
        ("busybox:1", "busybox:1"),
        ("library/busybox", "busybox:latest"),
        ("docker.io/busybox", "busybox:latest"),
        ("docker.io/library/busybox", "busybox:latest"),
        ("index.docker.io/library/busybox:1", "busybox:1"),
        ("docker.io/team/app", "team/app:latest"),
        ("index.docker.io/x/y", "x/y:latest"),
        ("foo/bar/baz", "foo/bar/baz:latest"),
        # Only `library/x` is an official image's long form.
        ("library/a/b", "library/a/b:latest"),
        ("docker.io/library/a/b", "library/a/b:latest"),
        # Registries: a first component with `.` or `:`, or `localhost`.
        ("localhost:5000/x", "localhost:5000/x:latest"),
        ("localhost/x", "localhost/x:latest"),
        ("127.0.0.1:5000/a/b:t", "127.0.0.1:5000/a/b:t"),
        ("foo.com:5000/x", "foo.com:5000/x:latest"),
        ("a.b/c", "a.b/c:latest"),
        ("a:1/b", "a:1/b:latest"),
        ("registry-1.docker.io/library/busybox", "registry-1.docker.io/library/busybox:latest"),
        # A registry's host name may have uppercase; only the repository may not.
        ("Example.com/foo", "Example.com/foo:latest"),
        # Not a valid host name, so the daemon reads the whole name as a repository path.
        ("a_b.com/x", "a_b.com/x:latest"),
        ("a_b.com/library/x", "a_b.com/library/x:latest"),
        ("a.b_c/x/y:t", "a.b_c/x/y:t"),
        # Without a `/` there is no registry: `host:port` is a name and a tag.
        ("localhost", "localhost:latest"),
        ("localhost:5000", "localhost:5000"),
        ("example.com:5000", "example.com:5000"),
        ("docker.io", "docker.io:latest"),
        ("a.b", "a.b:latest"),
        # Separators.
        ("a__b", "a__b:latest"),
        ("a--b", "a--b:latest"),
        ("a-b.c_d", "a-b.c_d:latest"),
        # Tags may have uppercase, `_`, `.` and `-`, up to 128 characters.
        ("busybox:Latest", "busybox:Latest"),
        ("busybox:_x", "busybox:_x"),
        ("localhost:5000/x:T-1.0_", "localhost:5000/x:T-1.0_"),
        ("x:" + "t" * 128, "x:" + "t" * 128),
        # 255 characters of full name, `docker.io/library/` counted.
        ("a" * 237, "a" * 237 + ":latest"),
        ("library/" + "a" * 237, "a" * 237 + ":latest"),
        # Digests: no `latest`, and a tag beside a digest is dropped.
        (f"busybox@{D}", f"busybox@{D}"),
        (f"busybox:1@{D}", f"busybox@{D}"),
        (f"docker.io/library/busybox:1@{D}", f"busybox@{D}"),
        (f"localhost:5000/x@{D}", f"localhost:5000/x@{D}"),
        (f"a/b@{D}", f"a/b@{D}"),
        (f"a@{D512}", f"a@{D512}"),
        # Full image IDs.
        (ID, ID),
        (HEX, ID),
        # Short hex and ID-like strings are names: whether they are IDs is the caller's question.
        ("4fec8b81", "4fec8b81:latest"),
        ("sha256:4fec8b81", "sha256:4fec8b81"),
        ("sha256:" + HEX.upper(), "sha256:" + HEX.upper()),
    ],
)
def test_normalize(ref: str, expected: str) -> None:
    assert normalize(ref) == expected


@pytest.mark.parametrize(
    "ref",
    [
        "",
        # Uppercase in the repository.
        "Busybox",
        "BUSYBOX",
        "A",
        "Foo/bar",
        "LOCALHOST/foo",
        "Localhost/foo",
        "example.com/Foo",
        "foo/Bar",
        "a_b.com/X",
        "A_b.com/x",
        HEX.upper(),
        # Bad tags.
        "busybox:",
        "busybox:-x",
        "busybox:.x",
        "busybox:a/b",
        "x:" + "t" * 129,
        ":tag",
        # Bad names.
        "a..b",
        "-a",
        "a-",
        "a___b",
        "a.-b",
        "foo bar",
        "é",
        "foo/",
        "/foo",
        "foo//bar",
        "a:b:c",
        "ab:c/d",
        # Bad registries.
        "localhost:abc/x",
        "a-.com/x",
        "-a.com/x",
        ".foo/x",
        "a_b.com:5000/x",
        # No IPv6 registries at API 1.41.
        "[::1]:5000/foo",
        # Too long, `docker.io/library/` counted.
        "a" * 238,
        "library/" + "a" * 238,
        "localhost/" + "a" * 246,
        # Bad digests: unknown algorithm, uppercase or wrong length, two of them, none.
        "a@md5:" + "c" * 32,
        "a@sha256:" + "B" * 64,
        "a@sha256:" + "b" * 63,
        "a@sha256:" + "b" * 65,
        "a@sha512:" + "d" * 64,
        f"a@{D}@{D}",
        "a@",
        "busybox@sha256",
        f"@{D}",
    ],
)
def test_normalize_refuses_what_the_daemon_refuses(ref: str) -> None:
    with pytest.raises(InvalidReference):
        normalize(ref)


def test_invalid_reference_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="lowercase"):
        normalize("Busybox")


# --- image IDs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        (ID, True),
        (HEX, True),
        ("4fec8b81", False),
        ("sha256:4fec8b81", False),
        (HEX.upper(), False),
        ("sha256:" + HEX.upper(), False),
        (HEX + "0", False),
        ("sha256:" + HEX[:-1], False),
        ("sha512:" + HEX + HEX, False),
        ("busybox", False),
        (f"busybox@{ID}", False),
        ("", False),
    ],
)
def test_is_image_id(ref: str, expected: bool) -> None:
    assert is_image_id(ref) is expected


@pytest.mark.parametrize("ref", [ID, HEX])
def test_image_id(ref: str) -> None:
    assert image_id(ref) == ID


@pytest.mark.parametrize("ref", ["4fec8b81", "busybox", "sha256:4fec8b81", ""])
def test_image_id_refuses_what_is_no_full_id(ref: str) -> None:
    with pytest.raises(InvalidReference):
        image_id(ref)


# --- repository ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("busybox", "busybox"),
        ("busybox:1", "busybox"),
        ("docker.io/library/busybox:1", "busybox"),
        ("docker.io/team/app:1", "team/app"),
        ("library/a/b", "library/a/b"),
        ("localhost:5000/x", "localhost:5000/x"),
        ("localhost:5000", "localhost"),
        (f"localhost:5000/x@{D}", "localhost:5000/x"),
        # A `RepoDigests` entry.
        (f"busybox@{D}", "busybox"),
        (f"team/app:1@{D}", "team/app"),
    ],
)
def test_repository(ref: str, expected: str) -> None:
    assert repository(ref) == expected


@pytest.mark.parametrize("ref", [ID, HEX, "Busybox", "", "busybox:"])
def test_repository_refuses_ids_and_invalid_references(ref: str) -> None:
    with pytest.raises(InvalidReference):
        repository(ref)


# --- with_tag ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("repo", "tag", "expected"),
    [
        ("busybox", "", "busybox:latest"),
        ("busybox", "1", "busybox:1"),
        ("busybox", "Latest", "busybox:Latest"),
        ("busybox:2", "", "busybox:2"),
        # The tag replaces the one in the repository.
        ("busybox:2", "1", "busybox:1"),
        ("localhost:5000/x:1", "2", "localhost:5000/x:2"),
        ("library/busybox", "x", "busybox:x"),
        ("docker.io/team/app", "", "team/app:latest"),
        ("index.docker.io/team/app:3", "", "team/app:3"),
        # `fromImage` may end with a bare `:`.
        ("busybox:", "1", "busybox:1"),
        ("busybox:", "", "busybox:latest"),
        # A digest as the tag replaces the repository's tag and digest.
        ("busybox", D, f"busybox@{D}"),
        ("busybox:2", D, f"busybox@{D}"),
        (f"busybox@{D2}", D, f"busybox@{D}"),
        ("localhost:5000/x", D512, f"localhost:5000/x@{D512}"),
        # A tag beside the repository's digest: the digest is what names the image.
        (f"busybox@{D}", "1", f"busybox@{D}"),
        (f"busybox@{D}", "", f"busybox@{D}"),
    ],
)
def test_with_tag(repo: str, tag: str, expected: str) -> None:
    assert with_tag(repo, tag) == expected


def test_with_tag_defaults_to_latest() -> None:
    assert with_tag("team/app") == "team/app:latest"


@pytest.mark.parametrize(
    ("repo", "tag"),
    [
        # Not a digest the daemon knows, and `:` is no tag character.
        ("busybox", "md5:" + "c" * 32),
        ("busybox", "sha256:" + "B" * 64),
        ("busybox", "-x"),
        ("busybox", "a" * 129),
        ("busybox", "a/b"),
        ("Busybox", "1"),
        ("", "1"),
        (":", "1"),
        (HEX, "1"),
        ("busybox::", "1"),
    ],
)
def test_with_tag_refuses_what_the_daemon_refuses(repo: str, tag: str) -> None:
    with pytest.raises(InvalidReference):
        with_tag(repo, tag)


# --- digest_of -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("repo_digest", "expected"),
    [
        (f"busybox@{D}", D),
        (f"localhost:5000/x@{D}", D),
        (f"team/app@{D512}", D512),
    ],
)
def test_digest_of(repo_digest: str, expected: str) -> None:
    assert digest_of(repo_digest) == expected


@pytest.mark.parametrize("repo_digest", ["busybox:1", "busybox@sha256:abc", "busybox@", "", D])
def test_digest_of_refuses_what_has_no_digest(repo_digest: str) -> None:
    with pytest.raises(InvalidReference):
        digest_of(repo_digest)


# --- full_name -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("busybox:latest", "docker.io/library/busybox:latest"),
        ("busybox", "docker.io/library/busybox:latest"),
        ("team/app:1", "docker.io/team/app:1"),
        ("library/a/b:1", "docker.io/library/a/b:1"),
        ("localhost:5000/x:1", "localhost:5000/x:1"),
        ("a_b.com/x:2", "a_b.com/x:2"),
        (f"busybox@{D}", f"docker.io/library/busybox@{D}"),
    ],
)
def test_full_name(ref: str, expected: str) -> None:
    assert full_name(ref) == expected


def test_full_name_sorts_as_the_daemon_sorts_repo_tags() -> None:
    # The `RepoTags` of one image, as a dockerd 20.10 listed them.
    listed = [
        "127.0.0.1:5000/a:1",
        "Example.com/q:1",
        "a_b.com/x:2",
        "library/a/b:1",
        "a:1",
        "aa:1",
        "busybox:0",
        "busybox:latest",
        "zeta:1",
        "team/app:1",
        "localhost/z:1",
    ]
    shuffled = listed[:]
    random.Random(7).shuffle(shuffled)
    assert sorted(shuffled, key=full_name) == listed
