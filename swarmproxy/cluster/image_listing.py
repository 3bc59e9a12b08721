"""Merging what every node says of its images into what one daemon would say."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from swarmproxy.cluster.references import InvalidReference, full_name

Image = dict[str, Any]

# What the daemon lists for an image with no tag (or no digest) at all.
_PLACEHOLDERS = {"RepoTags": "<none>:<none>", "RepoDigests": "<none>@<none>"}
# Counted per node; -1 when the daemon was not asked to count.
_COUNTS = ("Containers", "SharedSize")
_DF_LISTS = ("Containers", "Volumes", "BuildCache")


def _daemon_order(ref: str) -> str:
    """The daemon sorts an image's references by their full name (`docker.io/library/...`)."""
    try:
        return full_name(ref)
    except InvalidReference:
        # A newer node may list a name this API version's rules refuse: still sort it.
        return ref


def _merge_refs(lists: Sequence[list[str] | None], placeholder: str) -> list[str] | None:
    present = [refs for refs in lists if refs is not None]
    if not present:
        return None
    seen = list(dict.fromkeys(ref for refs in present for ref in refs))
    real = [ref for ref in seen if ref != placeholder]
    # A node that only knows the image untagged says nothing against a tag another has.
    return sorted(real, key=_daemon_order) if real else seen


def _sum_counts(counts: Iterable[int]) -> int:
    counted = [count for count in counts if count >= 0]
    return sum(counted) if counted else -1


def _merge_one(copies: Sequence[tuple[str, Image]]) -> Image:
    merged = dict(copies[0][1])
    images = [image for _, image in copies]
    for key, placeholder in _PLACEHOLDERS.items():
        merged[key] = _merge_refs([image.get(key) for image in images], placeholder)
    for key in _COUNTS:
        merged[key] = _sum_counts(image.get(key, -1) for image in images)
    merged["Nodes"] = sorted({node for node, _ in copies})
    return merged


def newest_first(image: Image) -> tuple[int, str]:
    return -int(image.get("Created", 0)), str(image["Id"])


def merge_images(per_node: Sequence[tuple[str, list[Image]]]) -> list[Image]:
    """One entry per image ID, naming the nodes (`Nodes`) that hold it, newest first."""
    by_id: dict[str, list[tuple[str, Image]]] = {}
    for node, images in per_node:
        for image in images:
            by_id.setdefault(image["Id"], []).append((node, image))
    return sorted((_merge_one(copies) for copies in by_id.values()), key=newest_first)


def _made_before(created: int, reference: float) -> bool | None:
    """Whether an image listed as made in second `created` was made before the exact time
    `reference`; None when that second doesn't tell."""
    if created + 1 <= reference:
        return True
    if created >= reference:
        return False
    return None


def _made_after(created: int, reference: float) -> bool | None:
    if created > reference:
        return True
    if created + 1 <= reference:
        return False
    # Even a whole-second `reference` can't tell: the image may be made exactly then.
    return None


def filter_by_created(
    images: Sequence[Image], *, before: float | None, since: float | None
) -> tuple[list[Image], list[Image]]:
    """The images made strictly before `before` and strictly after `since` (exact times in
    seconds since the epoch), and apart from them those a listing's whole seconds can't
    place: the caller must look their exact times up."""
    kept: list[Image] = []
    ambiguous: list[Image] = []
    for image in images:
        created = int(image.get("Created", 0))
        verdicts = []
        if before is not None:
            verdicts.append(_made_before(created, before))
        if since is not None:
            verdicts.append(_made_after(created, since))
        if False in verdicts:
            continue
        (ambiguous if None in verdicts else kept).append(image)
    return kept, ambiguous


def _concat(lists: Iterable[list[Any] | None]) -> list[Any] | None:
    present = [items for items in lists if items is not None]
    return [item for items in present for item in items] if present else None


def _total(answers: Iterable[dict[str, Any]], key: str) -> int:
    return sum(answer.get(key) or 0 for answer in answers)


def merge_system_df(per_node: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """`GET /system/df` of the cluster: every node's usage added up."""
    answers = [answer for _, answer in per_node]
    merged = dict(answers[0]) if answers else {}
    # Each node's storage is its own, so the cluster uses the sum.
    merged["LayersSize"] = _total(answers, "LayersSize")
    # Deprecated: only the versions that still send it get it.
    if any("BuilderSize" in answer for answer in answers):
        merged["BuilderSize"] = _total(answers, "BuilderSize")
    if all(answer.get("Images") is None for answer in answers):
        merged["Images"] = None
    else:
        merged["Images"] = merge_images([(node, a.get("Images") or []) for node, a in per_node])
    for key in _DF_LISTS:
        merged[key] = _concat(answer.get(key) for answer in answers)
    return merged


def _unique(items: Iterable[Any]) -> list[Any]:
    """Exact duplicates dropped, first-seen order kept; items may be dicts."""
    seen: dict[str, Any] = {}
    for item in items:
        seen.setdefault(json.dumps(item, sort_keys=True), item)
    return list(seen.values())


def merge_deletions(per_node: Sequence[tuple[str, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """`DELETE /images/{name}`: what any node untagged or deleted, each said once."""
    return _unique(line for _, lines in per_node for line in lines)


def merge_prunes(per_node: Sequence[tuple[str, dict[str, Any]]], key: str) -> dict[str, Any]:
    """`POST /images/prune` (key `ImagesDeleted`) or `POST /build/prune` (`CachesDeleted`):
    what any node removed, each said once (null for nothing, as the daemon says), and the
    space all of them reclaimed."""
    answers = [answer for _, answer in per_node]
    merged = dict(answers[0]) if answers else {}
    merged[key] = _unique(item for answer in answers for item in answer.get(key) or []) or None
    merged["SpaceReclaimed"] = _total(answers, "SpaceReclaimed")
    return merged
