"""The container image's recipe, tested without a Docker engine, and the real image where one answers.

The first tests do what the ``Dockerfile`` does, with the same script (``deploy/install.sh``): build the wheel,
make a fresh virtualenv from it with the image's extras (from the package index, without torch), slim it as the
image's builder does (test suites, offline tools and debug sections dropped), then start the Dockerfile's
``CMD`` with its ``ENV`` (the image's paths ``/opt/venv``, ``/models`` and ``/data`` mapped onto temporary
folders, and a free port in ``DEFECTLENS_PORT``), poll its ``HEALTHCHECK`` command until it passes, predict one
image over HTTP and stop the service with SIGTERM. What they cannot check is the base image itself and the user
10001; the last test builds and runs the real image where ``docker info`` succeeds.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.require import import_or_missing

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
KEY = "container-recipe-key-0123456789"

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Recipe:
    """The final stage of the Dockerfile: its ENV, HEALTHCHECK command and CMD, as written."""

    env: dict[str, str]
    healthcheck: list[str]
    cmd: list[str]
    volumes: list[str]
    extras: str


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined and comments dropped."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [(m.group(1).upper(), m.group(2).strip()) for m in re.finditer(r"^(\w+)\s+(.*)$", joined, flags=re.M)]


def parse_recipe(text: str) -> Recipe:
    steps = instructions(text)
    install = next(args for op, args in steps if op == "RUN" and "install.sh venv" in args)
    last_from = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    env: dict[str, str] = {}
    healthcheck: list[str] = []
    cmd: list[str] = []
    volumes: list[str] = []
    for op, args in steps[last_from:]:
        if op == "ENV":
            for pair in shlex.split(args):
                name, value = pair.split("=", 1)
                env[name] = re.sub(r"\$(\w+)|\$\{(\w+)\}", lambda m: "${" + (m.group(1) or m.group(2)) + "}", value)
        elif op == "HEALTHCHECK":
            healthcheck = json.loads(args.split(" CMD ", 1)[1])
        elif op == "CMD":
            cmd = json.loads(args)
        elif op == "VOLUME":
            volumes = json.loads(args)
    return Recipe(env=env, healthcheck=healthcheck, cmd=cmd, volumes=volumes, extras=install.split()[-1])


RECIPE = parse_recipe(DOCKERFILE.read_text(encoding="utf-8"))


def test_the_dockerfile_is_what_the_tests_assume():
    """Exec-form CMD on every interface, a Python health check, numeric user, volumes, slim Debian base."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    steps = instructions(text)
    assert [args for op, args in steps if op == "FROM"] == [
        "python:3.11-slim-bookworm AS builder",
        "python:3.11-slim-bookworm",
    ]
    assert RECIPE.cmd[:2] == ["defectlens", "serve"] and RECIPE.cmd[RECIPE.cmd.index("--host") + 1] == "0.0.0.0"
    assert RECIPE.healthcheck[0] == "python" and "/readyz" in RECIPE.healthcheck[-1]
    assert next(args for op, args in steps if op == "USER") == "10001:10001"
    assert RECIPE.volumes == ["/models", "/data"]
    assert RECIPE.env["DEFECTLENS_MODEL"].startswith("/models/") and RECIPE.env["DEFECTLENS_DB"].startswith("/data/")
    assert "torch" not in RECIPE.extras and "train" not in RECIPE.extras
    # the installed fixture makes the virtualenv in the same two steps, in the same order
    runs = [args for op, args in steps if op == "RUN"]
    made = next(i for i, args in enumerate(runs) if "install.sh venv" in args and " /opt/venv " in args)
    slimmed = next(i for i, args in enumerate(runs) if "install.sh slim /opt/venv" in args)
    assert made < slimmed


def test_what_the_builder_copies_passes_the_dockerignore_and_exists():
    """.dockerignore excludes everything but what the builder stage COPYs; each of those is in the tree."""
    allowed = [
        line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines() if line.startswith("!")
    ]
    copied = []
    for op, args in instructions(DOCKERFILE.read_text(encoding="utf-8")):
        if op == "COPY" and not args.startswith("--from"):
            copied += args.split()[:-1]
    assert copied
    for source in copied:
        assert source in allowed, f"{source} is COPYed but .dockerignore leaves it out of the build context"
        assert (ROOT / source).exists(), source


def test_a_deprecation_in_the_build_log_fails_the_recipe(tmp_path):
    """install.sh's guard: a build that warns of a deprecation stops the image (and this test's wheel)."""
    python = tmp_path / "python"
    python.write_text('#!/bin/sh\n[ "$1" = -c ] && exit 0\necho "SetuptoolsDeprecationWarning: License classifiers"\n')
    python.chmod(0o755)
    proc = subprocess.run(["sh", str(ROOT / "deploy" / "install.sh"), "wheel", str(ROOT), str(tmp_path / "out")],
                          env={**os.environ, "PYTHON": str(python)}, capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 1
    assert "SetuptoolsDeprecationWarning" in proc.stderr and "warned of a deprecation" in proc.stderr


@dataclass
class Installed:
    """The recipe made here: the wheel and the image's virtualenv."""

    wheel: Path
    prefix: Path
    seconds: float


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    tmp = tmp_path_factory.mktemp("recipe")
    script = ROOT / "deploy" / "install.sh"
    env = {**os.environ, "PYTHON": sys.executable}
    start = time.monotonic()
    built = subprocess.run(
        ["sh", str(script), "wheel", str(ROOT), str(tmp / "wheels")], env=env, capture_output=True, text=True
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp / "wheels").glob("defectlens-*.whl")
    prefix = tmp / "opt-venv"
    made = subprocess.run(
        ["sh", str(script), "venv", str(wheel), str(prefix), RECIPE.extras], env=env, capture_output=True, text=True
    )
    assert made.returncode == 0, made.stderr
    # what the image ships: the builder slims its virtualenv before the final stage copies it
    slimmed = subprocess.run(["sh", str(script), "slim", str(prefix)], env=env, capture_output=True, text=True)
    assert slimmed.returncode == 0, slimmed.stderr
    return Installed(wheel=wheel, prefix=prefix, seconds=time.monotonic() - start)


def test_the_wheel_carries_its_metadata_and_files(installed):
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = set(wheel.namelist())
        info = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = wheel.read(info).decode()
        entry_points = wheel.read(info.replace("METADATA", "entry_points.txt")).decode()
    assert {"defectlens/py.typed", "defectlens/recipes/casting.yaml", "defectlens/serve/static/index.html"} <= names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)
    assert "License-Expression: Apache-2.0" in metadata and "Classifier: Typing :: Typed" in metadata
    assert "License ::" not in metadata  # the SPDX expression replaces licence classifiers (PEP 639)
    torch = re.findall(r"^Requires-Dist: torch.*$", metadata, flags=re.M)
    assert torch and all('extra == "train"' in line for line in torch)  # torch only with the train extra
    for extra in ("serve", "line", "camera", "openvino", "train", "all"):
        assert f"Provides-Extra: {extra}" in metadata
    assert "defectlens = defectlens.__main__:run" in entry_points


def test_the_virtualenv_has_no_torch_and_says_what_runs(installed):
    python = installed.prefix / "bin" / "python"
    assert subprocess.run([python, "-c", "import torch"], capture_output=True).returncode != 0
    version = subprocess.run([installed.prefix / "bin" / "defectlens", "--version"], capture_output=True, text=True)
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("defectlens 0.")
    assert "onnxruntime " in version.stdout and "torch" not in version.stdout


@pytest.fixture(scope="module")
def part(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real ELPV cell (the elpv-dataset package)."""
    from importlib import resources

    import_or_missing("elpv_dataset", flag="EXTRAS", reason="the image predicted is an ELPV cell (the [train] extra)")
    source = sorted(Path(str(resources.files("elpv_dataset") / "data" / "images")).glob("*.png"))[0]
    return Path(shutil.copy(source, tmp_path_factory.mktemp("part") / source.name))


@pytest.fixture
def volumes(bundle: Path, tmp_path: Path) -> dict[str, Path]:
    """The image's volumes as folders here, the bundle where DEFECTLENS_MODEL says."""
    out = {"/models": tmp_path / "models", "/data": tmp_path / "data"}
    for folder in out.values():
        folder.mkdir()
    model = out["/models"] / Path(RECIPE.env["DEFECTLENS_MODEL"]).name
    shutil.copy(bundle, model)
    return out


def container_env(installed: Installed, volumes: dict[str, Path], **overrides: str) -> dict[str, str]:
    """The Dockerfile's ENV with the image's paths mapped here, a free port, and ``overrides``."""
    places = {"/opt/venv": installed.prefix, **volumes}
    env = {"PATH": os.environ["PATH"], "HOME": str(volumes["/data"]), "LANG": "C.UTF-8"}
    for name, value in RECIPE.env.items():
        for image_path, here in places.items():
            value = re.sub(rf"(?<![\w/]){re.escape(image_path)}(?=/|$|:)", str(here), value)
        env[name] = value.replace("${PATH}", os.environ["PATH"])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        env["DEFECTLENS_PORT"] = str(probe.getsockname()[1])
    env["DEFECTLENS_API_KEY"] = KEY  # the deployment's secret (compose.yaml requires one)
    return {**env, **overrides}


def start(env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    """The CMD, found on the image's PATH (the virtualenv first), as the container would start it."""
    executable = shutil.which(RECIPE.cmd[0], path=env["PATH"])
    assert executable is not None and executable.startswith(env["PATH"].split(":")[0])
    with log.open("wb") as out:
        return subprocess.Popen([executable, *RECIPE.cmd[1:]], env=env, cwd=cwd, stdout=out, stderr=out)


def healthy(env: dict[str, str]) -> bool:
    command = [shutil.which(RECIPE.healthcheck[0], path=env["PATH"]), *RECIPE.healthcheck[1:]]
    return subprocess.run(command, env=env, capture_output=True, timeout=30).returncode == 0


def upload(port: str, image: Path) -> dict:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{image.name}"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + image.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/predict",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}", "X-API-Key": KEY},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def test_the_cmd_serves_passes_its_healthcheck_predicts_and_stops_on_sigterm(installed, volumes, part, tmp_path):
    env = container_env(installed, volumes)
    log = tmp_path / "container.log"
    proc = start(env, volumes["/data"], log)
    try:
        deadline = time.monotonic() + 120  # a hang guard on a loaded machine, not a timing assertion
        while not healthy(env):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        answer = upload(env["DEFECTLENS_PORT"], part)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    (result,) = answer["results"]
    assert result["file"] == part.name and result["status"] == "ok", answer
    # The README's exit codes: SIGTERM ends a command by the signal's default action (docker reports 143);
    # every answer given was logged before it was sent.
    assert code == -signal.SIGTERM, log.read_text()
    assert (volumes["/data"] / Path(RECIPE.env["DEFECTLENS_DB"]).name).is_file()  # the log on the volume


def test_predict_and_the_predictor_run_in_the_virtualenv(installed, volumes, part):
    env = container_env(installed, volumes)
    command = ["defectlens", "predict", str(part), "--model", env["DEFECTLENS_MODEL"]]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "ok"
    library = (
        "import sys; from defectlens import Predictor; print(Predictor.load(sys.argv[1]).predict(sys.argv[2]).status)"
    )
    proc = subprocess.run(["python", "-c", library, env["DEFECTLENS_MODEL"], str(part)], env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def _unwritable_folder(tmp_path: Path) -> Path:
    """A folder where no file can be created: chmod 555, or /sys when running as root (root ignores modes)."""
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        (folder / "probe").touch()
    except OSError:
        return folder
    return Path("/sys")


@pytest.mark.parametrize(
    ("case", "says"),
    [
        ("no bundle", ""),
        ("unwritable log volume", ""),
        ("bad DEFECTLENS_PORT", "env DEFECTLENS_PORT='eighty' is not a TCP port"),
        ("short DEFECTLENS_API_KEY", "the API key must be at least 8 characters"),
    ],
)
def test_bad_starts_say_one_line_and_exit_non_zero(case, says, installed, volumes, tmp_path):
    overrides: dict[str, str] = {}
    if case == "no bundle":
        for bundle in volumes["/models"].iterdir():
            bundle.unlink()
        says = str(volumes["/models"] / Path(RECIPE.env["DEFECTLENS_MODEL"]).name)
    elif case == "unwritable log volume":
        locked = _unwritable_folder(tmp_path)
        overrides["DEFECTLENS_DB"] = str(locked / "log" / "inspections.sqlite")
        says = str(locked)
    elif case == "bad DEFECTLENS_PORT":
        overrides["DEFECTLENS_PORT"] = "eighty"
    else:
        overrides["DEFECTLENS_API_KEY"] = "short"
    env = container_env(installed, volumes, **overrides)
    executable = shutil.which(RECIPE.cmd[0], path=env["PATH"])
    proc = subprocess.run([executable, *RECIPE.cmd[1:]], env=env, cwd=volumes["/data"], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("defectlens: error: ") and says in lines[0], proc.stderr


def test_the_compose_station_file_is_valid_in_the_image(installed):
    """compose.yaml's station runs deploy/station.yaml: its keys and values pass the station file's checks."""
    check = "from pathlib import Path; from defectlens.line.config import load_station_file as f; f(Path(input()))"
    proc = subprocess.run([installed.prefix / "bin" / "python", "-c", check], input=str(ROOT / "deploy/station.yaml"),
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr


def _docker_answers() -> str | None:
    """None when a Docker engine answers ``docker info``, else why not."""
    if shutil.which("docker") is None:
        return "no docker command on this machine"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60)
    return None if info.returncode == 0 else f"docker info failed: {info.stderr.strip().splitlines()[-1:]}"


def test_the_real_image_builds_and_gets_ready(bundle, tmp_path):
    """Where a Docker engine answers (not on our machines): build the image, run it on the bundle, /readyz."""
    why = _docker_answers()
    if why is not None:
        pytest.skip(f"{why}: the image itself is not built here (the recipe tests above ran instead)")
    tag = f"defectlens-test:{uuid.uuid4().hex[:8]}"
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(bundle, models / "model.dlens")
    models.chmod(0o755)
    subprocess.run(["docker", "build", "-t", tag, str(ROOT)], check=True, timeout=1800)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    run = ["docker", "run", "-d", "--rm", "-p", f"127.0.0.1:{port}:8000", "-v", f"{models}:/models:ro", "-e",
           f"DEFECTLENS_API_KEY={KEY}", tag]  # fmt: skip
    container = subprocess.run(run, check=True, capture_output=True, text=True).stdout.strip()
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
                    assert response.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, "the container never got ready"
                time.sleep(1)
    finally:
        subprocess.run(["docker", "stop", container], capture_output=True, timeout=60)
        subprocess.run(["docker", "rmi", tag], capture_output=True, timeout=60)
