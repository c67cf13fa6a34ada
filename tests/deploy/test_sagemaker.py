"""`monolith sagemaker ...` against moto's server on loopback, the standard stand-in for AWS (which cannot be
reached from here): the CLI as a user runs it, boto3 finding the endpoint through AWS_ENDPOINT_URL, and the
resources read back through boto3."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer

from monolith.cli import main

ROLE = "arn:aws:iam::123456789012:role/monolith-sagemaker"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/monolith:0.1.0"
INSTANCE = "ml.g4dn.xlarge"  # moto knows SageMaker's older instance types only


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    httpx.post(f"{url}/moto-api/reset")  # moto keeps its state per process: each test starts from none
    for key, value in {
        "AWS_ENDPOINT_URL": url,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }.items():
        monkeypatch.setenv(key, value)
    try:
        yield url
    finally:
        server.stop()


def client(service: str) -> Any:
    return boto3.client(service)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    code = main(["sagemaker", *args])
    out = capsys.readouterr().out.strip()
    return code, json.loads(out) if code == 0 and out else None


def deploy_args(name: str, *extra: str) -> list[str]:
    return ["deploy", "--name", name, "--image", IMAGE, "--role", ROLE, "--instance-type", INSTANCE, *extra]


def test_deploy_makes_a_real_time_endpoint_with_the_asked_settings(aws: str, capsys) -> None:
    extra = ["--model-data-url", "s3://twin/model.tar.gz", "--env", "MONOLITH_ENGINE__MAX_NUM_SEQS=32"]
    code, out = run(capsys, *deploy_args("twin", *extra, "--instance-count", "2"))
    assert code == 0 and out["asynchronous"] is False
    sm = client("sagemaker")
    model = sm.describe_model(ModelName="twin")
    container = model["PrimaryContainer"]
    assert container["Image"] == IMAGE and container["ModelDataUrl"] == "s3://twin/model.tar.gz"
    assert container["Environment"] == {"MONOLITH_ENGINE__MAX_NUM_SEQS": "32"}
    assert model["ExecutionRoleArn"] == ROLE
    variant = sm.describe_endpoint_config(EndpointConfigName="twin")["ProductionVariants"][0]
    assert (variant["InstanceType"], variant["InitialInstanceCount"], variant["ModelName"]) == (INSTANCE, 2, "twin")
    assert sm.describe_endpoint(EndpointName="twin")["EndpointConfigName"] == "twin"


def test_deploy_async_sets_the_output_and_notifications(aws: str, capsys) -> None:
    topics = ["--sns-success", "arn:aws:sns:us-east-1:123456789012:ok", "--sns-error", "arn:aws:sns:us-east-1:1:err"]
    code, out = run(capsys, *deploy_args("twin-async", "--async-output", "s3://twin/answers", *topics))
    assert code == 0 and out["asynchronous"] is True
    config = client("sagemaker").describe_endpoint_config(EndpointConfigName="twin-async")["AsyncInferenceConfig"]
    assert config["OutputConfig"]["S3OutputPath"] == "s3://twin/answers"
    assert config["OutputConfig"]["NotificationConfig"]["SuccessTopic"].endswith(":ok")


def test_autoscale_is_target_tracking_on_invocations_per_instance(aws: str, capsys) -> None:
    run(capsys, *deploy_args("twin"))
    code, _ = run(capsys, "autoscale", "--name", "twin", "--min", "1", "--max", "4", "--target", "70")
    assert code == 0
    scaling = client("application-autoscaling")
    target = scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"][0]
    assert (target["ResourceId"], target["MinCapacity"], target["MaxCapacity"]) == (
        "endpoint/twin/variant/AllTraffic",
        1,
        4,
    )
    policy = scaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"][0]
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    assert policy["PolicyType"] == "TargetTrackingScaling" and tracking["TargetValue"] == 70.0
    assert tracking["PredefinedMetricSpecification"]["PredefinedMetricType"] == "SageMakerVariantInvocationsPerInstance"
    assert (tracking["ScaleInCooldown"], tracking["ScaleOutCooldown"]) == (300, 60)


def test_an_async_endpoint_scales_on_its_backlog_down_to_zero(aws: str, capsys) -> None:
    run(capsys, *deploy_args("twin-async", "--async-output", "s3://twin/answers"))
    args = ["autoscale", "--name", "twin-async", "--min", "0", "--max", "2", "--target", "5", "--asynchronous"]
    assert run(capsys, *args)[0] == 0
    scaling = client("application-autoscaling")
    assert scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"][0]["MinCapacity"] == 0
    tracking = scaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"][0][
        "TargetTrackingScalingPolicyConfiguration"
    ]
    assert tracking["CustomizedMetricSpecification"]["MetricName"] == "ApproximateBacklogSizePerInstance"
    assert run(capsys, "autoscale", "--name", "twin", "--min", "0", "--max", "2", "--target", "5")[0] == 1, (
        "a real-time endpoint keeps one instance"
    )


def test_transform_runs_a_json_lines_batch_job(aws: str, capsys) -> None:
    run(capsys, *deploy_args("twin"))
    args = ["transform", "--name", "twin", "--job", "nightly", "--input", "s3://twin/in/", "--output", "s3://twin/out/"]
    code, out = run(capsys, *args, "--instance-type", INSTANCE)
    assert code == 0 and out["name"] == "nightly"
    job = client("sagemaker").describe_transform_job(TransformJobName="nightly")
    assert job["BatchStrategy"] == "MultiRecord" and job["ModelName"] == "twin"
    assert (
        job["TransformInput"]["SplitType"] == "Line" and job["TransformInput"]["ContentType"] == "application/jsonlines"
    )
    assert job["TransformOutput"]["AssembleWith"] == "Line"


def test_delete_removes_everything_and_is_safe_to_repeat(aws: str, capsys) -> None:
    run(capsys, *deploy_args("twin"))
    run(capsys, "autoscale", "--name", "twin", "--max", "2", "--target", "70")
    code, out = run(capsys, "delete", "--name", "twin")
    assert code == 0 and out["deleted"] == ["scaling target", "endpoint", "endpoint config", "model"]
    sm = client("sagemaker")
    assert sm.list_endpoints()["Endpoints"] == [] and sm.list_models()["Models"] == []
    assert sm.list_endpoint_configs()["EndpointConfigs"] == []
    assert (
        client("application-autoscaling").describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
        == []
    )
    assert run(capsys, "delete", "--name", "twin") == (0, {"deleted": []})


def test_a_failed_step_leaves_no_half_made_endpoint(aws: str, capsys) -> None:
    # An instance type SageMaker refuses fails the endpoint config: the model made before it goes again.
    code = main(
        ["sagemaker", "deploy", "--name", "twin", "--image", IMAGE, "--role", ROLE, "--instance-type", "ml.nope"]
    )
    assert code == 1
    assert "ml.nope" in capsys.readouterr().err, "AWS's reason reaches the user"
    sm = client("sagemaker")
    assert sm.list_models()["Models"] == [] and sm.list_endpoint_configs()["EndpointConfigs"] == []
    assert sm.list_endpoints()["Endpoints"] == []
