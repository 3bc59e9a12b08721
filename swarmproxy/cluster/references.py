"""Image references as the daemon reads and writes them (distribution/reference's rules).

The nodes are Engine API 1.41 daemons: a first path component is a registry only when it
has a `.` or a `:` or is `localhost` (so `Foo/bar` is an uppercase repository, not a
registry), and a registry is a host name or IPv4 address, never a bracketed IPv6 one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from swarmproxy.errors import BadRequest

DEFAULT_TAG = "latest"

_DEFAULT_DOMAIN = "docker.io"
_LEGACY_DOMAIN = "index.docker.io"
_OFFICIAL_PREFIX = "library/"
# Counted on the full name, registry included: `docker.io/library/...`.
_NAME_MAX = 255

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]+)?")
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
# Only algorithms the daemon can verify; their hex is lowercase and of exact length.
_DIGEST = re.compile(r"sha256:[a-f0-9]{64}|sha384:[a-f0-9]{96}|sha512:[a-f0-9]{128}")
_IMAGE_ID = re.compile(r"(?:sha256:)?([a-f0-9]{64})")
_BARE_ID = re.compile(r"[a-f0-9]{64}")


class InvalidReference(BadRequest, ValueError):
    """A reference the daemon would refuse as malformed: its 400, if it reaches a client."""


@dataclass(frozen=True)
class _Reference:
    domain: str
    path: str
    tag: str | None
    digest: str | None

    @property
    def name(self) -> str:
        return f"{self.domain}/{self.path}" if self.domain else self.path

    @property
    def familiar_name(self) -> str:
        if self.domain != _DEFAULT_DOMAIN:
            return self.name
        official = self.path.removeprefix(_OFFICIAL_PREFIX)
        # Only `library/x` is shortened to `x`: `library/a/b` stays as it is.
        return official if "/" not in official else self.path

    def familiar(self) -> str:
        return self._qualify(self.familiar_name)

    def full(self) -> str:
        return self._qualify(self.name)

    def _qualify(self, name: str) -> str:
        # A digest pins the content; the daemon looks such a reference up without its tag.
        if self.digest is not None:
            return f"{name}@{self.digest}"
        return f"{name}:{self.tag or DEFAULT_TAG}"


def _split_domain(name: str) -> tuple[str, str]:
    first, slash, rest = name.partition("/")
    if not slash or not (any(c in first for c in ".:") or first == "localhost"):
        domain, remainder = _DEFAULT_DOMAIN, name
    else:
        domain, remainder = first, rest
    if domain == _LEGACY_DOMAIN:
        domain = _DEFAULT_DOMAIN
    if domain == _DEFAULT_DOMAIN and "/" not in remainder:
        remainder = _OFFICIAL_PREFIX + remainder
    return domain, remainder


def _split_tag(name_and_tag: str) -> tuple[str, str | None]:
    # A `:` before the last `/` belongs to the registry's port, not to a tag.
    colon = name_and_tag.rfind(":")
    if colon > name_and_tag.rfind("/"):
        return name_and_tag[:colon], name_and_tag[colon + 1 :]
    return name_and_tag, None


def _parse(ref: str) -> _Reference:
    if not ref:
        raise InvalidReference("invalid reference format: empty reference")
    if _BARE_ID.fullmatch(ref):
        raise InvalidReference(
            f"invalid repository name ({ref}), cannot specify 64-byte hexadecimal strings"
        )
    name_and_tag, at, digest = ref.partition("@")
    if at and not _DIGEST.fullmatch(digest):
        raise InvalidReference(f"invalid reference format: bad digest in {ref!r}")
    name, tag = _split_tag(name_and_tag)
    if tag is not None and not _TAG.fullmatch(tag):
        raise InvalidReference(f"invalid reference format: bad tag in {ref!r}")
    domain, path = _split_domain(name)
    if path.lower() != path:
        raise InvalidReference("invalid reference format: repository name must be lowercase")
    if not _DOMAIN.fullmatch(domain):
        # Not a registry after all (`a_b.com/x`): the daemon reads the whole name as a path.
        domain, path = "", f"{domain}/{path}"
    if not _PATH.fullmatch(path):
        raise InvalidReference(f"invalid reference format: {ref!r}")
    parsed = _Reference(domain, path, tag, digest or None)
    if len(parsed.name) > _NAME_MAX:
        raise InvalidReference(f"repository name must not be more than {_NAME_MAX} characters")
    return parsed


def is_image_id(ref: str) -> bool:
    """A full image ID, `sha256:<64 hex>` or the bare 64 hex (which can't be a name)."""
    return _IMAGE_ID.fullmatch(ref) is not None


def image_id(ref: str) -> str:
    """A full image ID in its `sha256:` form."""
    match = _IMAGE_ID.fullmatch(ref)
    if match is None:
        raise InvalidReference(f"not a full image ID: {ref!r}")
    return f"sha256:{match.group(1)}"


def normalize(ref: str) -> str:
    """The form the daemon writes in `RepoTags`, `RepoDigests` and `Untagged`, or an image ID.

    A short hex string is taken for a name: whether it is also an ID prefix is the caller's
    question.
    """
    if is_image_id(ref):
        return image_id(ref)
    return _parse(ref).familiar()


def repository(ref: str) -> str:
    """The familiar repository name of a reference, without its tag or digest."""
    if is_image_id(ref):
        raise InvalidReference(f"an image ID names no repository: {ref!r}")
    return _parse(ref).familiar_name


def with_tag(repository: str, tag: str = "") -> str:
    """The image named by `fromImage=repository&tag=tag`, or by the tag endpoint's repo/tag.

    The daemon drops a trailing `:` from `fromImage`, takes a digest given as the tag in
    place of the repository's tag and digest, and a tag in place of the repository's tag
    (a digest of the repository stays, so that one is what the result names). Without a tag
    this is `latest`, as the tag endpoint reads it; a pull of a bare name without a tag
    fetches every tag, which no single reference names.
    """
    ref = _parse(repository.removesuffix(":"))
    if not tag:
        return ref.familiar()
    if _DIGEST.fullmatch(tag):
        return _Reference(ref.domain, ref.path, None, tag).familiar()
    if not _TAG.fullmatch(tag):
        raise InvalidReference(f"invalid tag format: {tag!r}")
    return _Reference(ref.domain, ref.path, tag, ref.digest).familiar()


def digest_of(repo_digest: str) -> str:
    """The digest of a `RepoDigests` entry (`name@sha256:...`)."""
    _, at, digest = repo_digest.partition("@")
    if not at or not _DIGEST.fullmatch(digest):
        raise InvalidReference(f"not a digest reference: {repo_digest!r}")
    return digest


def full_name(ref: str) -> str:
    """A reference with its registry and `library/` spelt out, as the daemon sorts an
    image's `RepoTags` and `RepoDigests`: `busybox:latest` is `docker.io/library/busybox:latest`.
    """
    return _parse(ref).full()
