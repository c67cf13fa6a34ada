"""The image's SageMaker start: SageMaker runs `IMAGE serve` and nothing else. No container engine runs here, so
the entry point script runs for real with a stand-in `monolith` on PATH that records the command line and the
environment it was given, and that command line is parsed by the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

from monolith.cli import build_parser
from monolith.config import load_settings
from tests.deploy.test_containerfile import CONTAINERFILE, ROOT, exec_form, final_stage

ENTRYPOINT = ROOT / "tools" / "container-entrypoint.sh"
# Prints the command line it got and the environment the entry point set, as JSON.
RECORDER = """#!/bin/sh
python3 - "$@" <<'PY'
import json, os, sys
env = os.environ.get
seen = {"model": env("MONOLITH_ENGINE__MODEL"), "drain": env("MONOLITH_SHUTDOWN__DRAIN_S")}
print(json.dumps({"argv": sys.argv[1:], **seen}))
PY
"""


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    fake = tmp_path / "bin" / "monolith"
    fake.parent.mkdir()
    fake.write_text(RECORDER)
    fake.chmod(0o755)
    return fake.parent


def started(bin_dir: Path, *args: str, **env: str) -> dict:
    environment = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "SAGEMAKER_MODEL_DIR": "/nonexistent", **env}
    result = subprocess.run(
        ["sh", str(ENTRYPOINT), *args], capture_output=True, text=True, env=environment, check=True, timeout=30
    )
    return json.loads(result.stdout)


def test_sagemaker_s_serve_serves_the_gpu_config_on_its_port(bin_dir: Path) -> None:
    plain = started(bin_dir, "serve")
    assert plain["argv"] == ["serve", "--config", "configs/gpu.yaml", "--host", "0.0.0.0", "--port", "8080"]
    assert plain["model"] is None, "no checkpoint in /opt/ml/model: the configured hub id"
    assert int(plain["drain"]) < 30, "the drain fits in SageMaker's 30 s"
    bound = started(bin_dir, "serve", SAGEMAKER_BIND_TO_PORT="9123")
    assert bound["argv"][-2:] == ["--port", "9123"]
    args = build_parser().parse_args(plain["argv"])
    assert args.command == "serve" and args.port == 8080 and args.host == "0.0.0.0"
    load_settings(ROOT / args.config)


def test_a_checkpoint_in_opt_ml_model_is_served(bin_dir: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    assert started(bin_dir, "serve", SAGEMAKER_MODEL_DIR=str(model))["model"] is None, "not a checkpoint"
    (model / "config.json").write_text("{}")
    assert started(bin_dir, "serve", SAGEMAKER_MODEL_DIR=str(model))["model"] == str(model)
    chosen = started(bin_dir, "serve", SAGEMAKER_MODEL_DIR=str(model), MONOLITH_ENGINE__MODEL="org/other")
    assert chosen["model"] == "org/other", "an explicit setting wins"


def test_any_other_command_line_goes_to_the_cli_as_is(bin_dir: Path) -> None:
    kubernetes = ["serve", "--config", "configs/gpu.yaml", "--host", "0.0.0.0", "--port", "8000"]
    assert started(bin_dir, *kubernetes)["argv"] == kubernetes
    assert started(bin_dir, "health")["argv"] == ["health"]


def test_the_image_runs_the_entry_point_and_says_it_takes_sagemaker_s_port() -> None:
    parsed = DockerfileParser(fileobj=CONTAINERFILE.open("rb"))
    stage = final_stage(parsed)
    entrypoint = exec_form(next(i["value"] for i in stage if i["instruction"] == "ENTRYPOINT"))
    copied = [i["value"].split() for i in stage if i["instruction"] == "COPY"]
    assert ["tools/container-entrypoint.sh", entrypoint[0]] in copied
    labels = parsed.labels
    assert labels.get("com.amazonaws.sagemaker.capabilities.accept-bind-to-port") == "true"
    assert "8080" in " ".join(i["value"] for i in stage if i["instruction"] == "EXPOSE")
