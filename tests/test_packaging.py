"""The package as users get it: a wheel built from the sources that the Dockerfile copies
(pyproject.toml, README.md, swarmproxy/), installed with its dependencies into a fresh
virtual environment, whose own `swarmproxy` command then runs away from this checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]

# Building, making the venv and installing the dependencies (from pip's cache once they have
# been fetched) take about 20 s; a run near this bound has gone wrong.
pytestmark = pytest.mark.timeout(90)


def run(*argv: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    # Nothing of the checkout or of a developer's overrides may leak into the venv's run.
    env = {
        k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("SWARMPROXY_")
    }
    return subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )


def checked(*argv: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    result = run(*argv, cwd=cwd)
    assert result.returncode == 0, f"{argv}:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin directory of a venv holding the wheel and its dependencies, nothing else."""
    work = tmp_path_factory.mktemp("packaging")
    source = work / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source)
    shutil.copytree(
        REPO / "swarmproxy", source / "swarmproxy", ignore=shutil.ignore_patterns("__pycache__")
    )
    wheels = work / "wheels"
    pip = (sys.executable, "-m", "pip", "--disable-pip-version-check")
    checked(*pip, "wheel", "--quiet", "--no-deps", "--wheel-dir", wheels, source, cwd=work)
    (wheel,) = wheels.glob("*.whl")
    assert wheel.name == f"swarmproxy-{VERSION}-py3-none-any.whl"
    # No pip of its own (ensurepip is slow): this pip installs into it through --python.
    checked(sys.executable, "-m", "venv", "--without-pip", work / "venv", cwd=work)
    checked(*pip, "--python", work / "venv" / "bin" / "python", "install", "-q", wheel, cwd=work)
    return work / "venv" / "bin"


def test_version_is_the_packages(venv: Path, tmp_path: Path) -> None:
    result = checked(venv / "swarmproxy", "--version", cwd=tmp_path)
    assert result.stdout == f"swarmproxy {VERSION}\n"
    where = checked(
        venv / "python", "-c", "import swarmproxy; print(swarmproxy.__file__)", cwd=tmp_path
    )
    assert Path(where.stdout.strip()).is_relative_to(venv.parent)


def test_config_check_passes_the_example(venv: Path, tmp_path: Path) -> None:
    example = REPO / "config.example.toml"
    result = checked(venv / "swarmproxy", "config", "check", "--config", example, cwd=tmp_path)
    assert result.stdout.startswith(f"{example}: valid\n")
    assert "nodes:     2" in result.stdout


def test_config_check_names_what_is_wrong(venv: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text('[server]\nport = 2375\n\n[[nodes]]\naddress = "tcp://127.0.0.1"\n')
    result = run(venv / "swarmproxy", "config", "check", "--config", broken, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "swarmproxy: config error: server.port: unknown key",
        "swarmproxy: config error: nodes[0].address: "
        "'tcp://127.0.0.1' is not tcp://HOST:PORT or unix:///PATH",
        f"swarmproxy: {broken}: 2 problems",
    ]
