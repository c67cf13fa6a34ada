"""`monolith sagemaker deploy|autoscale|transform|delete`: the image on SageMaker the way the deployment it
replaces did it, each one command, with boto3 alone (the SageMaker SDK is not needed).

- deploy: a model (the ECR image, an optional ModelDataUrl that SageMaker unpacks into /opt/ml/model, MONOLITH_*
  settings as its environment), an endpoint config (one variant; with `async_output`, an asynchronous endpoint:
  AsyncInferenceConfig with the S3 output and optional SNS topics) and the endpoint. A step that fails deletes what
  the earlier steps made: no half-made endpoint is left behind.
- autoscale: the variant as a scalable target (min..max instances) and a target-tracking policy, as the old
  system had: invocations per instance for a real-time endpoint; for an asynchronous one the queue per instance
  (ApproximateBacklogSizePerInstance), which may scale to zero.
- transform: a batch transform job on the model: JSON Lines records in S3, MultiRecord mini-batches split by line,
  answers assembled by line (the container's application/jsonlines contract).
- delete: the scaling target and policies, the endpoint, its config and the model; what is already gone is skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

VARIANT = "AllTraffic"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
SCALE_IN_COOLDOWN_S = 300  # a replica costs minutes of model load: drop one slowly (the HPA's choice too)
SCALE_OUT_COOLDOWN_S = 60


@dataclass
class Deployment:
    name: str  # the model, the endpoint config and the endpoint all take it
    image: str  # the ECR image URI
    role_arn: str  # the execution role SageMaker assumes (ECR pull, S3 read)
    instance_type: str = "ml.g5.2xlarge"  # one A10G (24 GB): the 8B twin in bfloat16
    instance_count: int = 1
    model_data_url: str | None = None  # s3://.../model.tar.gz, unpacked into /opt/ml/model
    environment: dict[str, str] = field(default_factory=dict)  # MONOLITH_* settings
    async_output: str | None = None  # s3://... : an asynchronous endpoint writing its answers there
    async_success_topic: str | None = None  # SNS topic ARNs told when an async answer is written or fails
    async_error_topic: str | None = None


def resource_id(name: str) -> str:
    return f"endpoint/{name}/variant/{VARIANT}"


def endpoint_config(d: Deployment) -> dict[str, Any]:
    config: dict[str, Any] = {
        "EndpointConfigName": d.name,
        "ProductionVariants": [
            {
                "VariantName": VARIANT,
                "ModelName": d.name,
                "InstanceType": d.instance_type,
                "InitialInstanceCount": d.instance_count,
            }
        ],
    }
    if d.async_output:
        output: dict[str, Any] = {"S3OutputPath": d.async_output}
        topics = {"SuccessTopic": d.async_success_topic, "ErrorTopic": d.async_error_topic}
        if any(topics.values()):
            output["NotificationConfig"] = {k: v for k, v in topics.items() if v}
        config["AsyncInferenceConfig"] = {"OutputConfig": output}
    return config


def deploy(sagemaker: Any, d: Deployment) -> dict[str, Any]:
    """Model, endpoint config, endpoint; on a failure, what was made is deleted again and the error raised."""
    container: dict[str, Any] = {"Image": d.image, "Environment": d.environment}
    if d.model_data_url:
        container["ModelDataUrl"] = d.model_data_url
    undo: list[Callable[[], Any]] = []
    try:
        sagemaker.create_model(ModelName=d.name, ExecutionRoleArn=d.role_arn, PrimaryContainer=container)
        undo.append(lambda: sagemaker.delete_model(ModelName=d.name))
        sagemaker.create_endpoint_config(**endpoint_config(d))
        undo.append(lambda: sagemaker.delete_endpoint_config(EndpointConfigName=d.name))
        answer = sagemaker.create_endpoint(EndpointName=d.name, EndpointConfigName=d.name)
    except Exception:
        for step in reversed(undo):
            try:
                step()
            except Exception:  # clean up what can be; the first error is the one to report
                log.exception("cleaning up after a failed deploy")
        raise
    return {"endpoint_arn": answer["EndpointArn"], "name": d.name, "asynchronous": bool(d.async_output)}


def autoscale(
    autoscaling: Any, name: str, min_instances: int, max_instances: int, target: float, asynchronous: bool
) -> dict[str, Any]:
    """Target tracking on invocations per instance (real-time) or the queue per instance (asynchronous)."""
    if min_instances < (0 if asynchronous else 1) or max_instances < max(min_instances, 1):
        raise ValueError("min must be at least 1 (0 for an asynchronous endpoint) and max at least min and 1")
    rid = resource_id(name)
    autoscaling.register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId=rid,
        ScalableDimension=DIMENSION,
        MinCapacity=min_instances,
        MaxCapacity=max_instances,
    )
    tracking: dict[str, Any] = {
        "TargetValue": target,
        "ScaleInCooldown": SCALE_IN_COOLDOWN_S,
        "ScaleOutCooldown": SCALE_OUT_COOLDOWN_S,
    }
    if asynchronous:
        tracking["CustomizedMetricSpecification"] = {
            "MetricName": "ApproximateBacklogSizePerInstance",
            "Namespace": "AWS/SageMaker",
            "Dimensions": [{"Name": "EndpointName", "Value": name}],
            "Statistic": "Average",
        }
    else:
        tracking["PredefinedMetricSpecification"] = {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"}
    policy = f"{name}-target-tracking"
    autoscaling.put_scaling_policy(
        PolicyName=policy,
        ServiceNamespace="sagemaker",
        ResourceId=rid,
        ScalableDimension=DIMENSION,
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration=tracking,
    )
    return {"resource_id": rid, "policy": policy, "min": min_instances, "max": max_instances, "target": target}


def transform(
    sagemaker: Any, job: str, model: str, input_s3: str, output_s3: str, instance_type: str, instance_count: int = 1
) -> dict[str, Any]:
    answer = sagemaker.create_transform_job(
        TransformJobName=job,
        ModelName=model,
        BatchStrategy="MultiRecord",
        TransformInput={
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": input_s3}},
            "ContentType": "application/jsonlines",
            "SplitType": "Line",
        },
        TransformOutput={"S3OutputPath": output_s3, "AssembleWith": "Line", "Accept": "application/jsonlines"},
        TransformResources={"InstanceType": instance_type, "InstanceCount": instance_count},
    )
    return {"transform_job_arn": answer["TransformJobArn"], "name": job}


def delete(sagemaker: Any, autoscaling: Any, name: str) -> list[str]:
    """Everything `deploy` and `autoscale` made for `name`; returns what was deleted."""
    deleted = []
    rid = resource_id(name)
    steps: list[tuple[str, Callable[[], Any]]] = [
        (
            "scaling target",
            lambda: autoscaling.deregister_scalable_target(
                ServiceNamespace="sagemaker", ResourceId=rid, ScalableDimension=DIMENSION
            ),
        ),
        ("endpoint", lambda: sagemaker.delete_endpoint(EndpointName=name)),
        ("endpoint config", lambda: sagemaker.delete_endpoint_config(EndpointConfigName=name)),
        ("model", lambda: sagemaker.delete_model(ModelName=name)),
    ]
    for what, step in steps:
        try:
            step()
            deleted.append(what)
        except Exception as exc:  # botocore's ClientError: already gone (or never made) is fine here
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
            if code not in ("ValidationException", "ObjectNotFoundException", "ResourceNotFound"):
                raise
    return deleted
