"""The README's library example, run as it is written, against the real nodes."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

from swarmproxy.local_nodes import DockerNode

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

REPO = pathlib.Path(__file__).resolve().parent.parent
README = REPO / "README.md"


def example() -> str:
    found = re.search(r"<!-- library-example -->\n```python\n(.*?)```", README.read_text(), re.S)
    assert found, "the README has lost its library example"
    return found.group(1)


def test_the_readme_library_example_runs(nodes: list[DockerNode], tmp_path: pathlib.Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(example())
    # This checkout's swarmproxy, whatever the environment has installed.
    env = {**os.environ, "NODES": ",".join(n.tcp_address for n in nodes), "PYTHONPATH": str(REPO)}
    ran = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=90, env=env
    )
    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    assert lines[:3] == [f"{n.name} {n.tcp_address} ready" for n in nodes]
    assert "in zone a: ['node-1']" in lines
    assert "taking containers: ['node-2', 'node-3']" in lines
    assert "['busybox:latest'] on node-1, node-2, node-3" in lines
    assert "example ran on node-3" in lines
    assert "would place on: ['node-2', 'node-3', 'node-4']" in lines
    assert all(
        "example" not in n.docker("ps", "-a", "--format", "{{.Names}}").stdout for n in nodes
    )
