"""Images through the proxy with the real docker CLI, checked on the nodes themselves.

No registry is reachable from this machine: pulls and pushes go to the rig's registry on
loopback, and an image can reach the nodes by load, import, build and commit.
"""

from __future__ import annotations

import functools
import http.client
import http.server
import io
import json
import pathlib
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from swarmproxy.local_nodes import (
    IMAGE,
    DockerNode,
    busybox_image_tar,
    busybox_rootfs_tar,
    cli_env,
    run_docker,
)
from tests.rig.images import unique_image, unique_parts
from tests.rig.proxy import Proxy
from tests.rig.registry import Registry

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def image_id(node: DockerNode, ref: str) -> str | None:
    result = node.docker("image", "inspect", "--format", "{{.Id}}", ref, check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def holders(nodes: list[DockerNode], ref: str) -> list[str]:
    return [n.name for n in nodes if image_id(n, ref) is not None]


def clear_images(proxy: Proxy, nodes: list[DockerNode]) -> None:
    """Every image but the rig's busybox goes, through the proxy so its index stays true;
    a node that lost busybox gets it back, as every other test needs it."""
    busybox_id = image_id(nodes[0], IMAGE)
    listed = proxy.docker(
        "images", "-a", "--no-trunc", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}"
    )
    for line in listed.stdout.splitlines():
        found_id, ref = line.split()
        if found_id != busybox_id:
            proxy.docker("rmi", "-f", found_id, check=False, timeout=120)
        elif ref != IMAGE:
            proxy.docker("rmi", ref, check=False)
    for node in nodes:
        if image_id(node, IMAGE) != busybox_id or busybox_id is None:
            node.docker("load", input=busybox_image_tar())


@pytest.fixture
def images(cluster: Proxy, nodes: list[DockerNode]) -> Iterator[Proxy]:
    """The proxy, with no image but busybox on any node before and after the test."""
    clear_images(cluster, nodes)
    yield cluster
    clear_images(cluster, nodes)


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    with Registry.start() as started:
        yield started


def test_load_puts_the_image_on_every_node_and_lists_it_once(
    images: Proxy, nodes: list[DockerNode], tmp_path: pathlib.Path
) -> None:
    tar, expected_id = unique_image("loaded:v1")
    # Made the user's way: saved from one node, straight from the daemon.
    nodes[0].docker("load", input=tar)
    saved = tmp_path / "loaded.tar"
    nodes[0].docker("save", "-o", str(saved), "loaded:v1")
    nodes[0].docker("rmi", "loaded:v1")

    result = images.docker("load", "-i", str(saved))
    # Once as one daemon says it, and once per node, labelled.
    assert result.stdout.splitlines().count("Loaded image: loaded:v1") == 1
    for node in nodes:
        assert f"{node.name}: Loaded image: loaded:v1" in result.stdout
        assert image_id(node, "loaded:v1") == expected_id

    listed = images.docker("images", "--no-trunc", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}")
    assert listed.stdout.splitlines().count(f"{expected_id} loaded:v1") == 1
    status, body = images.json(
        "GET", "/images/json?filters=" + quote(json.dumps({"reference": ["loaded"]}))
    )
    assert status == 200
    assert [(i["Id"], i["Nodes"]) for i in body] == [(expected_id, ["node-1", "node-2", "node-3"])]


def test_import_puts_the_image_on_every_node(
    images: Proxy, nodes: list[DockerNode], tmp_path: pathlib.Path
) -> None:
    rootfs = tmp_path / "rootfs.tar"
    rootfs.write_bytes(busybox_rootfs_tar())
    result = images.docker("import", "-c", 'CMD ["/bin/sh"]', str(rootfs), "imported:v1")
    assert result.returncode == 0
    assert holders(nodes, "imported:v1") == ["node-1", "node-2", "node-3"]
    for node in nodes:
        assert f"{node.name}: sha256:" in result.stdout
    ran = images.docker("run", "--rm", "imported:v1", "echo", "from an import")
    assert ran.stdout == "from an import\n"


def test_tag_inspect_history_save_and_rmi_agree_with_the_nodes(
    images: Proxy, nodes: list[DockerNode], tmp_path: pathlib.Path
) -> None:
    busybox_id = image_id(nodes[0], IMAGE)
    images.docker("tag", "busybox", "extra:one")
    assert holders(nodes, "extra:one") == ["node-1", "node-2", "node-3"]

    inspected = json.loads(images.docker("image", "inspect", "extra:one").stdout)
    assert inspected[0]["Id"] == busybox_id
    assert "extra:one" in inspected[0]["RepoTags"]
    history = images.docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", "extra:one")
    assert (
        history.stdout.strip()
        == nodes[1]
        .docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", "extra:one")
        .stdout.strip()
    )

    saved = tmp_path / "extra.tar"
    images.docker("save", "-o", str(saved), "extra:one")
    with tarfile.open(saved) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert manifest[0]["RepoTags"] == ["extra:one"]

    removed = images.docker("rmi", "extra:one")
    assert removed.stdout.strip() == "Untagged: extra:one"
    assert holders(nodes, "extra:one") == []
    assert holders(nodes, IMAGE) == ["node-1", "node-2", "node-3"]
    missing = images.docker("image", "inspect", "extra:one", check=False)
    assert missing.returncode == 1
    assert "No such image: extra:one" in missing.stderr


def test_rmi_by_id_removes_it_from_every_node(images: Proxy, nodes: list[DockerNode]) -> None:
    tar, expected_id = unique_image("byid:v1")
    images.docker("load", input=tar)
    assert holders(nodes, expected_id) == ["node-1", "node-2", "node-3"]

    removed = images.docker("rmi", expected_id.removeprefix("sha256:")[:12])
    said = removed.stdout.splitlines()
    # Then its layer, once: the same content on every node.
    assert said[:2] == ["Untagged: byid:v1", f"Deleted: {expected_id}"]
    assert len(said) == 3
    assert said[2].startswith("Deleted: sha256:")
    assert holders(nodes, expected_id) == []
    again = images.docker("rmi", expected_id, check=False)
    assert again.returncode == 1
    assert "No such image" in again.stderr


def test_rmi_of_an_image_in_use_names_the_node_and_what_was_removed(
    images: Proxy, nodes: list[DockerNode]
) -> None:
    tar, expected_id = unique_image("inuse:v1")
    images.docker("load", input=tar)
    container = images.docker("create", "inuse:v1").stdout.strip()
    user = next(n for n in nodes if container in n.container_ids())

    refused = images.docker("rmi", expected_id, check=False)
    assert refused.returncode == 1
    assert "conflict" in refused.stderr
    assert f"(on {user.name})" in refused.stderr
    others = [n for n in nodes if n is not user]
    assert f"done on {', '.join(n.name for n in others)}" in refused.stderr
    assert holders(nodes, expected_id) == [user.name]
    images.docker("rm", container)


def test_build_streams_its_output_and_the_image_runs(
    images: Proxy, nodes: list[DockerNode], tmp_path: pathlib.Path
) -> None:
    (tmp_path / "Dockerfile").write_text(
        "FROM busybox\n"
        "RUN echo first step && sleep 3 && echo second step\n"
        "RUN echo built by swarmproxy > /built.txt\n"
        'CMD ["cat", "/built.txt"]\n'
    )
    env = cli_env(images.address, tmp_path / "cli", {"DOCKER_BUILDKIT": "0"})
    started = time.monotonic()
    process = subprocess.Popen(
        ["docker", "build", "-t", "t1", str(tmp_path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    seen: dict[str, float] = {}
    for line in process.stdout:
        for marker in ("first step", "second step"):
            if line.strip() == marker:
                seen[marker] = time.monotonic() - started
    assert process.wait(120) == 0
    # Each line reached the CLI as the node printed it, not all at the end.
    assert seen["second step"] - seen["first step"] >= 2

    built_on = holders(nodes, "t1")
    assert len(built_on) == 1
    for _ in range(3):
        assert images.docker("run", "--rm", "t1").stdout == "built by swarmproxy\n"

    # The CLI's default builder against these daemons (the legacy one, without buildx).
    default = images.docker("build", "-t", "t2", str(tmp_path), timeout=120)
    assert default.returncode == 0
    assert images.docker("run", "--rm", "t2").stdout == "built by swarmproxy\n"


def test_build_goes_where_its_base_image_is(
    images: Proxy, nodes: list[DockerNode], tmp_path: pathlib.Path
) -> None:
    tar, _ = unique_image("onlyhere:v1")
    nodes[2].docker("load", input=tar)
    (tmp_path / "Dockerfile").write_text("FROM onlyhere:v1\nLABEL built=yes\n")
    for tag in ("b1", "b2", "b3"):
        images.docker("build", "-t", tag, str(tmp_path), timeout=120)
        assert holders(nodes, tag) == ["node-3"]


def test_commit_then_run_the_new_image(images: Proxy, nodes: list[DockerNode]) -> None:
    images.docker("run", "--name", "to-commit", "busybox", "sh", "-c", "echo committed > /c.txt")
    committed = images.docker("commit", "to-commit", "committed:v1").stdout.strip()
    assert committed.startswith("sha256:")
    assert len(holders(nodes, "committed:v1")) == 1
    ran = images.docker("run", "--rm", "committed:v1", "cat", "/c.txt")
    assert ran.stdout == "committed\n"


def test_pull_with_no_registry_fails_naming_every_node(images: Proxy) -> None:
    started = time.monotonic()
    result = images.docker("pull", "nosuch/image:1", check=False, timeout=60)
    assert result.returncode == 1
    assert "registry-1.docker.io" in result.stderr
    assert "(on node-1, node-2, node-3)" in result.stderr
    assert time.monotonic() - started < 30
    assert images.request("GET", "/_ping")[0] == 200
    status, body = images.json("POST", "/images/create?fromImage=nosuch/image&tag=1")
    assert status == 500
    assert body["message"].endswith("(on node-1, node-2, node-3)")


def test_pull_from_a_registry_reaches_every_node(
    images: Proxy, nodes: list[DockerNode], registry: Registry
) -> None:
    parts = unique_parts()
    ref = f"{registry.address}/team/app:v1"
    registry.add_image("team/app", "v1", parts)

    result = images.docker("pull", ref, timeout=120)
    for node in nodes:
        assert f"{node.name}: Status: Downloaded newer image for {ref}" in result.stdout
        assert image_id(node, ref) == parts.id
    listed = images.docker("images", "--digests", "--format", "{{.Repository}} {{.Digest}}")
    lines = [line for line in listed.stdout.splitlines() if "team/app" in line]
    assert len(lines) == 1
    assert "sha256:" in lines[0]


def test_push_goes_from_a_node_that_holds_the_image(images: Proxy, registry: Registry) -> None:
    ref = f"{registry.address}/pushed/busybox:v2"
    images.docker("tag", "busybox", ref)
    result = images.docker("push", ref, timeout=120)
    assert result.returncode == 0
    assert "v2" in registry.manifests("pushed/busybox")


def test_a_silent_registry_is_given_up_on(
    nodes: list[DockerNode], registry: Registry, tmp_path: pathlib.Path
) -> None:
    proxy = Proxy.start(tmp_path, nodes, extra_toml="[images]\npull_inactivity_timeout = 2\n")
    try:
        registry.stall("silent/app")
        started = time.monotonic()
        result = proxy.docker("pull", f"{registry.address}/silent/app:v1", check=False)
        assert result.returncode == 1
        assert "no progress for 2s" in result.stderr
        assert time.monotonic() - started < 20
        assert proxy.request("GET", "/_ping")[0] == 200
    finally:
        proxy.stop()


def test_save_of_images_no_node_holds_together_is_refused(
    images: Proxy, nodes: list[DockerNode], tmp_path: pathlib.Path
) -> None:
    first, _ = unique_image("apart:one")
    second, _ = unique_image("apart:two")
    nodes[0].docker("load", input=first)
    nodes[1].docker("load", input=second)
    out = str(tmp_path / "apart.tar")
    result = images.docker("save", "-o", out, "apart:one", "apart:two", check=False)
    assert result.returncode == 1
    assert "no node holds all of the images" in result.stderr
    together = images.docker("save", "-o", out, "apart:one", "busybox", check=False)
    assert together.returncode == 0


def test_images_filters_and_df(images: Proxy, nodes: list[DockerNode]) -> None:
    old, _ = unique_image("older:v1")
    nodes[0].docker("load", input=old)
    time.sleep(1.1)
    images.docker("run", "--name", "labelled", "busybox", "true")
    images.docker("commit", "--change", "LABEL kind=newer", "labelled", "newer:v1")

    def listed(*filters: str) -> list[str]:
        args = [a for f in filters for a in ("--filter", f)]
        out = images.docker("images", *args, "--format", "{{.Repository}}:{{.Tag}}")
        return sorted(out.stdout.split())

    assert listed("reference=newer") == ["newer:v1"]
    assert listed("label=kind=newer") == ["newer:v1"]
    # `older` lives on node-1 only: the other nodes know nothing of it.
    assert listed("since=older:v1") == ["newer:v1"]
    assert "older:v1" in listed("before=newer:v1")
    assert "newer:v1" not in listed("before=newer:v1")
    assert listed("dangling=true") == []

    df = images.docker("system", "df", "--format", "{{json .}}")
    kinds = {json.loads(line)["Type"]: json.loads(line) for line in df.stdout.splitlines()}
    assert int(kinds["Images"]["TotalCount"]) >= 3
    pruned = images.docker("image", "prune", "-f")
    assert pruned.returncode == 0


def test_a_constraint_sends_a_load_and_a_pull_to_some_nodes_only(
    images: Proxy, nodes: list[DockerNode], registry: Registry, tmp_path: pathlib.Path
) -> None:
    # The docker CLI sends the header with every request when its config file says so.
    config = tmp_path / "cli"
    config.mkdir()
    (config / "config.json").write_text(
        json.dumps({"HttpHeaders": {"X-Swarmproxy-Constraint": "node!=node-2"}})
    )
    tar, expected_id = unique_image("some:v1")
    run_docker(images.address, config, "load", input=tar)
    assert holders(nodes, expected_id) == ["node-1", "node-3"]

    parts = unique_parts()
    registry.add_image("some/pulled", "v1", parts)
    ref = f"{registry.address}/some/pulled:v1"
    (config / "config.json").write_text(
        json.dumps({"HttpHeaders": {"X-Swarmproxy-Constraint": "node==node-2"}})
    )
    run_docker(images.address, config, "pull", ref, timeout=120)
    assert holders(nodes, ref) == ["node-2"]

    (config / "config.json").write_text(
        json.dumps({"HttpHeaders": {"X-Swarmproxy-Constraint": "node==nowhere"}})
    )
    refused = run_docker(images.address, config, "pull", ref, check=False)
    assert refused.returncode == 1
    assert "no ready node satisfies the constraint node==nowhere" in refused.stderr


def test_import_from_a_url_is_fetched_by_every_node(
    images: Proxy, nodes: list[DockerNode], tmp_path: pathlib.Path
) -> None:
    (tmp_path / "rootfs.tar").write_bytes(busybox_rootfs_tar())
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/rootfs.tar"
        images.docker("import", url, "from-url:v1", timeout=120)
    finally:
        server.shutdown()
        server.server_close()
    assert holders(nodes, "from-url:v1") == ["node-1", "node-2", "node-3"]


def test_login_and_search_are_answered_by_a_node(images: Proxy, registry: Registry) -> None:
    login = images.docker("login", "-u", "someone", "-p", "secret", registry.address)
    assert "Login Succeeded" in login.stdout
    search = images.docker("search", "busybox", check=False)
    # No registry is reachable: the node's own error comes back, through the proxy.
    assert search.returncode == 1
    assert "registry-1.docker.io" in search.stderr or "index.docker.io" in search.stderr


def test_dangling_images_are_listed_once(images: Proxy, nodes: list[DockerNode]) -> None:
    first, first_id = unique_image("moving:v1")
    second, _ = unique_image("moving:v1")
    images.docker("load", input=first)
    images.docker("load", input=second)
    dangling = images.docker("images", "-q", "--no-trunc", "--filter", "dangling=true")
    assert dangling.stdout.split() == [first_id]
    assert holders(nodes, first_id) == ["node-1", "node-2", "node-3"]


def test_an_index_gone_stale_behind_the_proxy_corrects_itself(
    images: Proxy, nodes: list[DockerNode]
) -> None:
    images.docker("tag", "busybox", "stale:v1")
    # Untagged on two nodes behind the proxy's back: the index still names them.
    for node in nodes[:2]:
        node.docker("rmi", "stale:v1")
    for _ in range(3):
        inspected = json.loads(images.docker("image", "inspect", "stale:v1").stdout)
        assert "stale:v1" in inspected[0]["RepoTags"]
    assert images.docker("rmi", "stale:v1").stdout.strip() == "Untagged: stale:v1"
    assert holders(nodes, "stale:v1") == []


def test_a_create_after_the_image_left_its_indexed_node_still_finds_it(
    images: Proxy, nodes: list[DockerNode]
) -> None:
    tar, _ = unique_image("wandering:v1")
    nodes[0].docker("load", input=tar)
    # Created, not run: the image holds no program, only a file.
    images.docker("rm", images.docker("create", "wandering:v1").stdout.strip())
    nodes[1].docker("load", input=tar)
    nodes[0].docker("rmi", "wandering:v1")
    # The index still names node-1, which answers that it has no such image any more: the
    # index is corrected and the image is where it still is, or copied from there.
    for _ in range(3):
        created = images.docker("create", "wandering:v1").stdout.strip()
        holder = next(n for n in nodes if created in n.container_ids())
        assert holder.docker("image", "inspect", "wandering:v1", check=False).returncode == 0


def test_a_tag_rebuilt_on_another_node_runs_its_newest_image(
    images: Proxy, nodes: list[DockerNode], tmp_path: pathlib.Path
) -> None:
    for version in ("one", "two"):
        (tmp_path / "Dockerfile").write_text(
            f'FROM busybox\nRUN echo {version} > /version\nCMD ["cat", "/version"]\n'
        )
        images.docker("build", "-t", "rebuilt", str(tmp_path), timeout=120)
    # Round-robin put the two builds on two nodes: both hold a `rebuilt:latest`.
    assert len(holders(nodes, "rebuilt")) == 2
    for _ in range(4):
        assert images.docker("run", "--rm", "rebuilt").stdout == "two\n"


def test_bad_image_input_gets_the_daemons_answers(images: Proxy, nodes: list[DockerNode]) -> None:
    direct = http.client.HTTPConnection("127.0.0.1", nodes[0].port, timeout=30)

    def node_says(method: str, path: str) -> tuple[int, object]:
        direct.request(method, path)
        response = direct.getresponse()
        return response.status, json.loads(response.read())

    for method, path in (
        ("POST", "/images/busybox/tag?repo=bad%20name"),
        ("POST", "/images/nosuch/tag?repo=x"),
        ("DELETE", "/images/nosuch"),
        ("GET", "/images/nosuch/json"),
        ("GET", "/images/json?filters=garbage"),
    ):
        assert images.json(method, path) == node_says(method, path), path
    direct.close()

    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        data = b"FROM busybox\n" + b"#" * (2 << 20)
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    for _ in range(3):
        status, _, body = images.request(
            "POST", "/build?t=BAD%20TAG", context.getvalue(), {"Content-Type": "application/x-tar"}
        )
        assert status == 500
        assert json.loads(body)["message"].startswith("invalid reference format")
    assert "└ Status: ready for retry" not in images.docker("info").stdout
