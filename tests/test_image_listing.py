"""swarmproxy.cluster.image_listing: what every node says of its images, as one daemon says it."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from swarmproxy.cluster.image_listing import (
    filter_by_created,
    merge_deletions,
    merge_images,
    merge_prunes,
    merge_system_df,
)

Image = dict[str, Any]

T = 1_704_067_200  # 2024-01-01T00:00:00Z

NONE_TAG = "<none>:<none>"
NONE_DIGEST = "<none>@<none>"


def image_id(char: str) -> str:
    return "sha256:" + char * 64


def image(char: str, created: int = T, /, **fields: Any) -> Image:
    """A `GET /images/json` entry as a node gives it; `fields` by the API's own names."""
    return {
        "Containers": -1,
        "Created": created,
        "Id": image_id(char),
        "Labels": None,
        "ParentId": "",
        "RepoDigests": None,
        "RepoTags": None,
        "SharedSize": -1,
        "Size": 1000,
        "VirtualSize": 1000,
        **fields,
    }


def ids(images: list[Image]) -> list[str]:
    return [i["Id"][len("sha256:")] for i in images]


def only(merged: list[Image]) -> Image:
    assert len(merged) == 1
    return merged[0]


# --- merge_images: one entry per image -----------------------------------------------------


def test_one_entry_per_image_id_naming_its_nodes() -> None:
    merged = merge_images(
        [
            ("n2", [image("a", RepoTags=["busybox:latest"]), image("b", T - 5, RepoTags=["x:1"])]),
            ("n1", [image("a", RepoTags=["busybox:latest"])]),
            ("n3", [image("c", T - 9, RepoTags=["y:1"]), image("a", RepoTags=["busybox:latest"])]),
        ]
    )
    assert [(i["Id"], i["Nodes"]) for i in merged] == [
        (image_id("a"), ["n1", "n2", "n3"]),
        (image_id("b"), ["n2"]),
        (image_id("c"), ["n3"]),
    ]


def test_the_first_nodes_entry_is_the_base() -> None:
    first = image("a", RepoTags=["x:1"], Size=10, Labels={"from": "n1"})
    second = image("a", RepoTags=["x:1"], Size=20, Labels={"from": "n2"})
    merged = only(merge_images([("n1", [first]), ("n2", [second])]))
    assert merged["Size"] == 10
    assert merged["Labels"] == {"from": "n1"}


def test_a_single_node_is_given_back_with_its_node() -> None:
    listed = [
        image("a", T, RepoTags=["x:1"], RepoDigests=[f"x@{image_id('d')}"]),
        image("b", T - 1),
    ]
    merged = merge_images([("n1", copy.deepcopy(listed))])
    assert merged == [{**entry, "Nodes": ["n1"]} for entry in listed]


def test_the_nodes_answers_are_left_as_they_were() -> None:
    per_node = [
        ("n1", [image("a", RepoTags=["x:1"], Containers=1)]),
        ("n2", [image("a", RepoTags=["y:1"], Containers=2)]),
    ]
    before = copy.deepcopy(per_node)
    merge_images(per_node)
    assert per_node == before


@pytest.mark.parametrize("per_node", [[], [("n1", [])], [("n1", []), ("n2", [])]])
def test_no_images(per_node: list[tuple[str, list[Image]]]) -> None:
    assert merge_images(per_node) == []


# --- merge_images: order -------------------------------------------------------------------


def test_newest_first_ties_by_id() -> None:
    merged = merge_images(
        [
            ("n1", [image("c", T + 10), image("b", T), image("e", T - 10)]),
            ("n2", [image("d", T + 20), image("a", T), image("b", T)]),
        ]
    )
    assert ids(merged) == ["d", "c", "a", "b", "e"]


# --- merge_images: RepoTags and RepoDigests ------------------------------------------------


def test_tags_and_digests_are_the_union_in_the_daemons_order() -> None:
    da, db = f"busybox@{image_id('1')}", f"busybox@{image_id('2')}"
    merged = only(
        merge_images(
            [
                ("n1", [image("a", RepoTags=["team/app:1", "busybox:latest"], RepoDigests=[db])]),
                (
                    "n2",
                    [image("a", RepoTags=["busybox:latest", "busybox:1"], RepoDigests=[da, db])],
                ),
            ]
        )
    )
    assert merged["RepoTags"] == ["busybox:1", "busybox:latest", "team/app:1"]
    assert merged["RepoDigests"] == [da, db]


def test_references_are_sorted_by_full_name_as_the_daemon_sorts_them() -> None:
    # 127.0.0.1:5000/a < docker.io/library/zeta < docker.io/team/app < localhost:5000/x
    merged = only(
        merge_images(
            [
                ("n1", [image("a", RepoTags=["localhost:5000/x:1"])]),
                ("n2", [image("a", RepoTags=["team/app:1"])]),
                ("n3", [image("a", RepoTags=["zeta:1", "127.0.0.1:5000/a:1"])]),
            ]
        )
    )
    assert merged["RepoTags"] == [
        "127.0.0.1:5000/a:1",
        "zeta:1",
        "team/app:1",
        "localhost:5000/x:1",
    ]


def test_a_reference_of_a_newer_daemon_is_kept_though_this_api_refuses_it() -> None:
    merged = only(
        merge_images(
            [
                ("n1", [image("a", RepoTags=["busybox:1"])]),
                ("n2", [image("a", RepoTags=["[::1]:5/x:1"])]),
            ]
        )
    )
    # Sorted by the name itself, as the newer daemon's full name is that name.
    assert merged["RepoTags"] == ["[::1]:5/x:1", "busybox:1"]


@pytest.mark.parametrize(
    ("key", "placeholder", "real"),
    [("RepoTags", NONE_TAG, "x:1"), ("RepoDigests", NONE_DIGEST, f"x@{image_id('d')}")],
)
def test_a_placeholder_gives_way_to_a_real_reference(key: str, placeholder: str, real: str) -> None:
    merged = only(
        merge_images(
            [
                ("n1", [image("a", **{key: [placeholder]})]),
                ("n2", [image("a", **{key: [real]})]),
                ("n3", [image("a", **{key: [placeholder]})]),
            ]
        )
    )
    assert merged[key] == [real]


@pytest.mark.parametrize(
    ("key", "placeholder"), [("RepoTags", NONE_TAG), ("RepoDigests", NONE_DIGEST)]
)
def test_a_placeholder_alone_is_kept_once(key: str, placeholder: str) -> None:
    merged = only(
        merge_images(
            [
                ("n1", [image("a", **{key: [placeholder]})]),
                ("n2", [image("a", **{key: None})]),
                ("n3", [image("a", **{key: [placeholder]})]),
            ]
        )
    )
    assert merged[key] == [placeholder]


@pytest.mark.parametrize(
    ("key", "ref"), [("RepoTags", "x:1"), ("RepoDigests", f"x@{image_id('d')}")]
)
def test_null_stays_null_only_where_every_node_says_null(key: str, ref: str) -> None:
    def merged(*lists: list[str] | None) -> list[str] | None:
        per_node = [(f"n{i}", [image("a", **{key: refs})]) for i, refs in enumerate(lists)]
        result: list[str] | None = only(merge_images(per_node))[key]
        return result

    assert merged(None, None) is None
    assert merged(None, [ref]) == [ref]
    assert merged([ref], None) == [ref]
    assert merged(None, []) == []
    assert merged([], []) == []


# --- merge_images: counts ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ([-1], -1),
        ([-1, -1, -1], -1),
        ([-1, 2], 2),
        ([0, -1], 0),
        ([0, 0], 0),
        ([1, 2, 4], 7),
    ],
)
@pytest.mark.parametrize("key", ["Containers", "SharedSize"])
def test_counts_add_up_where_counted(key: str, counts: list[int], expected: int) -> None:
    per_node = [(f"n{i}", [image("a", **{key: count})]) for i, count in enumerate(counts)]
    assert only(merge_images(per_node))[key] == expected


# --- filter_by_created ---------------------------------------------------------------------


def created_filter(
    seconds: list[int], before: float | None = None, since: float | None = None
) -> tuple[list[int], list[int]]:
    images = [image(chr(ord("a") + i), s) for i, s in enumerate(seconds)]
    kept, ambiguous = filter_by_created(images, before=before, since=since)
    return [i["Created"] for i in kept], [i["Created"] for i in ambiguous]


def test_no_bound_keeps_everything() -> None:
    assert created_filter([T + 1, T, T - 1]) == ([T + 1, T, T - 1], [])


def test_before_keeps_older_seconds_and_leaves_its_own_second_to_the_caller() -> None:
    assert created_filter([T + 1, T, T - 1], before=T + 0.5) == ([T - 1], [T])


def test_before_a_whole_second_is_never_ambiguous() -> None:
    # An image listed in second T was made at T or later: not before T.
    assert created_filter([T + 1, T, T - 1], before=float(T)) == ([T - 1], [])


def test_since_keeps_newer_seconds_and_leaves_its_own_second_to_the_caller() -> None:
    assert created_filter([T + 1, T, T - 1], since=T + 0.5) == ([T + 1], [T])


def test_since_a_whole_second_leaves_that_second_to_the_caller() -> None:
    # An image listed in second T may have been made exactly at T.
    assert created_filter([T + 1, T, T - 1], since=float(T)) == ([T + 1], [T])


def test_since_and_before_together() -> None:
    seconds = [T + 1, T, T - 1, T - 4, T - 5, T - 6]
    assert created_filter(seconds, since=T - 5 + 0.25, before=T + 0.75) == (
        [T - 1, T - 4],
        [T, T - 5],
    )


def test_a_sure_failure_outweighs_an_ambiguous_bound() -> None:
    # Second T is ambiguous for both bounds; T + 1 surely passes `since` but fails `before`.
    assert created_filter([T + 1, T], since=T + 0.5, before=T + 0.5) == ([], [T])


def test_filtering_keeps_the_order_and_the_entries() -> None:
    images = [image("c", T + 3), image("a", T + 2), image("b", T + 1)]
    kept, ambiguous = filter_by_created(images, before=T + 3.5, since=None)
    assert kept == images[1:]
    assert ambiguous == [images[0]]
    assert ambiguous[0] is images[0]


# --- merge_system_df -----------------------------------------------------------------------


def df(**answer: Any) -> dict[str, Any]:
    return {
        "LayersSize": 0,
        "Images": [],
        "Containers": [],
        "Volumes": [],
        "BuildCache": None,
        **answer,
    }


def test_df_adds_up_the_nodes() -> None:
    n1 = df(
        LayersSize=100,
        Images=[image("a", RepoTags=["x:1"], Containers=1, SharedSize=0)],
        Containers=[{"Id": "c1"}],
        Volumes=[{"Name": "v"}],
        BuildCache=[{"ID": "b1"}],
        BuilderSize=5,
    )
    n2 = df(
        LayersSize=50,
        Images=[
            image("a", RepoTags=["x:1"], Containers=2, SharedSize=0),
            image("b", T - 1, Containers=0, SharedSize=0),
        ],
        Containers=[{"Id": "c2"}],
        Volumes=[{"Name": "v"}],
        BuilderSize=7,
    )
    merged = merge_system_df([("n1", n1), ("n2", n2)])
    assert merged["LayersSize"] == 150
    assert merged["BuilderSize"] == 12
    assert [(i["Id"], i["Containers"], i["Nodes"]) for i in merged["Images"]] == [
        (image_id("a"), 3, ["n1", "n2"]),
        (image_id("b"), 0, ["n2"]),
    ]
    assert merged["Containers"] == [{"Id": "c1"}, {"Id": "c2"}]
    # Volumes of the same name on two nodes are two volumes.
    assert merged["Volumes"] == [{"Name": "v"}, {"Name": "v"}]
    assert merged["BuildCache"] == [{"ID": "b1"}]


def test_df_takes_other_keys_from_the_first_node() -> None:
    merged = merge_system_df([("n1", df(Other=1)), ("n2", df(Other=2, More=3))])
    assert merged["Other"] == 1
    assert "More" not in merged


def test_df_adds_no_builder_size_where_no_node_sends_it() -> None:
    assert "BuilderSize" not in merge_system_df([("n1", df()), ("n2", df())])


@pytest.mark.parametrize("key", ["Images", "Containers", "Volumes", "BuildCache"])
def test_df_lists_are_null_only_where_every_node_says_null(key: str) -> None:
    assert merge_system_df([("n1", df(**{key: None})), ("n2", df(**{key: None}))])[key] is None
    assert merge_system_df([("n1", df(**{key: None})), ("n2", df(**{key: []}))])[key] == []


def test_df_of_a_node_with_nothing_to_say() -> None:
    assert merge_system_df([("n1", {})]) == {
        "LayersSize": 0,
        "Images": None,
        "Containers": None,
        "Volumes": None,
        "BuildCache": None,
    }
    merged = merge_system_df([("n1", {}), ("n2", df(LayersSize=4, Images=[image("a")]))])
    assert merged["LayersSize"] == 4
    assert ids(merged["Images"]) == ["a"]


def test_df_of_no_node() -> None:
    assert merge_system_df([]) == {
        "LayersSize": 0,
        "Images": None,
        "Containers": None,
        "Volumes": None,
        "BuildCache": None,
    }


def test_df_leaves_the_nodes_answers_as_they_were() -> None:
    per_node = [("n1", df(Images=[image("a", Containers=1)])), ("n2", df(Images=[image("a")]))]
    before = copy.deepcopy(per_node)
    merge_system_df(per_node)
    assert per_node == before


# --- merge_deletions -----------------------------------------------------------------------


def test_deletions_are_said_once_in_order() -> None:
    a, b = image_id("a"), image_id("b")
    merged = merge_deletions(
        [
            ("n1", [{"Untagged": "x:1"}, {"Deleted": a}]),
            ("n2", [{"Untagged": "x:1"}, {"Untagged": f"x@{b}"}, {"Deleted": a}]),
            ("n3", [{"Untagged": "x:1"}, {"Deleted": b}, {"Deleted": a}]),
        ]
    )
    assert merged == [
        {"Untagged": "x:1"},
        {"Deleted": a},
        {"Untagged": f"x@{b}"},
        {"Deleted": b},
    ]


def test_deletions_of_different_kinds_are_different() -> None:
    a = image_id("a")
    merged = merge_deletions([("n1", [{"Untagged": a}]), ("n2", [{"Deleted": a}])])
    assert merged == [{"Untagged": a}, {"Deleted": a}]


@pytest.mark.parametrize("per_node", [[], [("n1", [])], [("n1", []), ("n2", [])]])
def test_no_deletions(per_node: list[tuple[str, list[dict[str, Any]]]]) -> None:
    assert merge_deletions(per_node) == []


# --- merge_prunes --------------------------------------------------------------------------


def test_image_prunes_are_said_once_and_their_space_added_up() -> None:
    a, b = image_id("a"), image_id("b")
    merged = merge_prunes(
        [
            ("n1", {"ImagesDeleted": [{"Untagged": "x:1"}, {"Deleted": a}], "SpaceReclaimed": 10}),
            ("n2", {"ImagesDeleted": [{"Deleted": a}, {"Deleted": b}], "SpaceReclaimed": 20}),
            ("n3", {"ImagesDeleted": None, "SpaceReclaimed": 0}),
        ],
        "ImagesDeleted",
    )
    assert merged == {
        "ImagesDeleted": [{"Untagged": "x:1"}, {"Deleted": a}, {"Deleted": b}],
        "SpaceReclaimed": 30,
    }


def test_build_prunes_are_said_once_and_their_space_added_up() -> None:
    merged = merge_prunes(
        [
            ("n1", {"CachesDeleted": ["c1", "c2"], "SpaceReclaimed": 3}),
            ("n2", {"CachesDeleted": ["c2", "c3"], "SpaceReclaimed": 4}),
        ],
        "CachesDeleted",
    )
    assert merged == {"CachesDeleted": ["c1", "c2", "c3"], "SpaceReclaimed": 7}


@pytest.mark.parametrize(
    "per_node",
    [
        [],
        [("n1", {"ImagesDeleted": None, "SpaceReclaimed": 0})],
        [
            ("n1", {"ImagesDeleted": None, "SpaceReclaimed": 0}),
            ("n2", {"ImagesDeleted": [], "SpaceReclaimed": 0}),
        ],
    ],
)
def test_nothing_pruned_is_null(per_node: list[tuple[str, dict[str, Any]]]) -> None:
    assert merge_prunes(per_node, "ImagesDeleted") == {"ImagesDeleted": None, "SpaceReclaimed": 0}


def test_prunes_leave_the_nodes_answers_as_they_were() -> None:
    per_node = [
        ("n1", {"CachesDeleted": ["c1"], "SpaceReclaimed": 3}),
        ("n2", {"CachesDeleted": ["c1"], "SpaceReclaimed": 4}),
    ]
    before = copy.deepcopy(per_node)
    merge_prunes(per_node, "CachesDeleted")
    assert per_node == before
