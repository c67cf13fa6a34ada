#!/bin/sh
# The image's entry point. SageMaker starts a container as `IMAGE serve` and nothing else: that serves the GPU
# config on 0.0.0.0:${SAGEMAKER_BIND_TO_PORT:-8080} (SageMaker's port), with the checkpoint SageMaker unpacked
# from ModelDataUrl into /opt/ml/model when there is one (else engine.model, the configured hub id), and a drain
# that fits in the 30 s SageMaker gives a stopping container. Settings still come from MONOLITH_* variables.
# Any other command line (Kubernetes' `serve --config ... --port 8000`, `health`, `ingest`) goes to the CLI as is.
set -eu

if [ "$#" -eq 1 ] && [ "$1" = "serve" ]; then
    model_dir="${SAGEMAKER_MODEL_DIR:-/opt/ml/model}"
    if [ -z "${MONOLITH_ENGINE__MODEL:-}" ] && [ -f "$model_dir/config.json" ]; then
        export MONOLITH_ENGINE__MODEL="$model_dir"
    fi
    export MONOLITH_SHUTDOWN__DRAIN_S="${MONOLITH_SHUTDOWN__DRAIN_S:-25}"
    exec monolith serve --config "${MONOLITH_CONFIG:-configs/gpu.yaml}" --host 0.0.0.0 \
        --port "${SAGEMAKER_BIND_TO_PORT:-8080}"
fi
exec monolith "$@"
