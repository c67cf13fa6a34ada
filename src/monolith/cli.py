"""The `monolith` entry point: serve, ingest, model prepare, generate, batch, health."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monolith import logs
from monolith.config import DEFAULT_CONFIG, ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from monolith.runtime import Loader


def _serve(settings: Settings, args: argparse.Namespace) -> None:
    run_server(settings, args.host or settings.server.host, args.port or settings.server.port)


def run_server(settings: Settings, host: str, port: int, loader: Loader | None = None) -> None:
    """What `monolith serve` runs once its settings are read; `loader` brings the runtime up (the tests' scripted
    engine passes its own: tests/scripted_server.py)."""
    from monolith.api.app import create_app, load_all
    from monolith.api.server import serve
    from monolith.tracing import start_tracing

    provider = start_tracing(settings.server.log_format)  # before the app: its middleware and generator look for it
    try:
        serve(create_app(settings, loader or load_all), host, port)
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    finally:
        if provider is not None:
            provider.shutdown()  # the spans of the last requests, exported before the process ends
    exit_without_teardown(code)


def exit_without_teardown(code: int) -> None:
    """Ends a server that has shut down: its drain, the engine, the stores and the exporter are closed, what
    is left is the interpreter's own teardown, which collects torch's, vLLM's and transformers' module graphs
    for ~2.7 s on this CPU, time a terminating pod and every restart waits for. Logs and streams are flushed
    first; nothing else registered at exit remains to run."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _ingest(settings: Settings, args: argparse.Namespace) -> None:
    from monolith.retrieval.embedder import Embedder
    from monolith.retrieval.ingest import ingest_file
    from monolith.runtime import open_store

    if not args.file.exists():
        raise ConfigError(f"{args.file} not found")
    store = open_store(settings)
    try:
        report = ingest_file(args.file, Embedder(settings.embedder), store, settings.ingest)
    finally:
        store.close()
    print(
        f"{report.documents} documents, {report.chunks} chunks, {report.new_points} new points, "
        f"{len(report.errors)} bad lines"
    )
    for error in report.errors:
        print(f"  {error}", file=sys.stderr)


def _reference(settings: Settings, args: argparse.Namespace) -> None:
    from monolith.config import reference

    print(reference(), end="")


def _prepare(settings: Settings, args: argparse.Namespace) -> None:
    from monolith.model_prep import prepare_model

    print(prepare_model(settings))


def _build_twins(settings: Settings, args: argparse.Namespace) -> None:
    from monolith.model_prep import prepare_model
    from monolith.training import Recipe, build_twins

    prepare_model(settings)
    built = build_twins(settings, Recipe(steps=args.steps), force=args.force)
    print(json.dumps({name: str(path) for name, path in built.items()}))


def _generate(settings: Settings, args: argparse.Namespace) -> None:
    from monolith.admission import Admission
    from monolith.engine import Sampling
    from monolith.engine.vllm_engine import VllmEngine
    from monolith.generation import Generator, new_request_id
    from monolith.model_prep import prepare_model
    from monolith.work import Work

    prepare_model(settings)
    engine = VllmEngine(settings)
    generator = Generator(engine, settings, Admission())
    ids = generator.chat_ids([{"role": "user", "content": args.prompt}])
    sampling = Sampling(max_tokens=generator.max_tokens(args.max_tokens), temperature=args.temperature)
    generator.check_fits(ids, sampling.max_tokens, "prompt")

    async def run() -> None:
        async for delta in generator.stream(ids, sampling, new_request_id("cli"), Work()):
            print(delta.text, end="", flush=True)
        print()

    try:
        asyncio.run(run())
    finally:
        engine.shutdown()


def _batch(settings: Settings, args: argparse.Namespace) -> None:
    from monolith.jobs.lines import needs_retrieval
    from monolith.jobs.transform import run_batch
    from monolith.runtime import Runtime
    from monolith.tracing import background_span, start_tracing

    if not args.input.exists():
        raise ConfigError(f"{args.input} not found")
    provider = start_tracing(settings.server.log_format)  # before the engine: its generations look for it
    runtime = Runtime(settings)

    async def run() -> None:
        await runtime.load(with_jobs=False, retrieval=needs_retrieval(args.input, settings))
        if runtime.services is None:
            raise ConfigError(runtime.detail)
        # Traced as a batch the server runs: a trace of its own (linked to a TRACEPARENT in the environment, the
        # way a pipeline step passes its trace on), a span per line under it.
        attributes = {"monolith.batch.input": str(args.input), "monolith.batch.output": str(args.output)}
        try:
            in_flight = args.max_in_flight or settings.batch.max_in_flight
            with background_span(f"batch {args.input.name}", attributes, os.environ.get("TRACEPARENT")):
                report = await run_batch(runtime.services, args.input, args.output, in_flight)
        finally:
            await runtime.close()
        print(report.summary())

    try:
        asyncio.run(run())
    finally:
        if provider is not None:
            provider.shutdown()


def _eval(settings: Settings, args: argparse.Namespace) -> None:
    """The RAG evaluation, in a data dir of its own: the sample corpus alone, freshly ingested."""
    import tempfile

    from monolith.evaluation import MODES, evaluate, load_questions, markdown, write
    from monolith.model_prep import prepare_model
    from monolith.runtime import Runtime

    modes = args.modes.split(",")
    unknown = set(modes) - set(MODES)
    if unknown:
        raise ConfigError(f"unknown eval modes {sorted(unknown)}; known: {', '.join(MODES)}")
    questions = load_questions(args.questions)
    corpus = Path(settings.ingest.sample_corpus or "corpus/sample.jsonl")
    checkpoint = prepare_model(settings).resolve()
    with tempfile.TemporaryDirectory(prefix="monolith-eval-") as workdir:
        engine = settings.engine.model_copy(update={"model": str(checkpoint)})
        qdrant = settings.qdrant.model_copy(update={"url": None})
        ingest = settings.ingest.model_copy(update={"sample_corpus": str(corpus.resolve())})
        isolated = settings.model_copy(
            update={"data_dir": Path(workdir), "engine": engine, "qdrant": qdrant, "ingest": ingest}
        )
        runtime = Runtime(isolated)

        async def run() -> dict:
            await runtime.load(with_jobs=False)
            if runtime.services is None:
                raise ConfigError(runtime.detail)
            try:
                return await evaluate(
                    runtime.services, questions, corpus, modes, args.k, args.answers, args.answer_tokens
                )
            finally:
                await runtime.close()

        started = time.perf_counter()
        report = asyncio.run(run())
    report["seconds"] = round(time.perf_counter() - started, 1)
    write(report, args.out)
    print(markdown(report))
    print(f"{len(questions)} questions x {len(modes)} modes in {report['seconds']} s; written to {args.out}/")


def _health(settings: Settings, args: argparse.Namespace) -> None:
    """The container HEALTHCHECK: exit 0 only when the server says it is ready."""
    import urllib.error
    import urllib.request

    url = args.url or f"http://127.0.0.1:{settings.server.port}/health/ready"
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as response:
            print(f"{response.status} {response.read().decode(errors='replace')}")
    except urllib.error.HTTPError as exc:
        raise Unhealthy(f"{exc.code} {exc.read().decode(errors='replace')}") from None
    except OSError as exc:
        raise Unhealthy(f"no answer from {url}: {exc}") from None


class Unhealthy(Exception):
    pass


def _bench(settings: Settings, args: argparse.Namespace) -> None:
    try:
        import httpx_sse  # noqa: F401
    except ImportError:
        raise ConfigError("the benchmark's clients are needed: pip install 'monolith[bench]'") from None
    from monolith.bench.run import main as bench_main

    bench_main(["--config", str(args.config_path), "--profile", args.profile, "--parts", args.parts])


def _sagemaker(settings: Settings, args: argparse.Namespace) -> None:
    """boto3 reads credentials, region and endpoint (AWS_ENDPOINT_URL) the usual way; --region overrides."""
    try:
        import boto3
    except ImportError:
        raise SageMakerFailed("boto3 is needed: pip install 'monolith[sagemaker]'") from None
    from monolith.deploy import sagemaker

    session = boto3.session.Session(region_name=args.region)
    client, scaling = session.client("sagemaker"), session.client("application-autoscaling")
    try:
        if args.action == "deploy":
            env = dict(pair.split("=", 1) for pair in args.env)
            deployment = sagemaker.Deployment(
                args.name,
                args.image,
                args.role,
                args.instance_type,
                args.instance_count,
                args.model_data_url,
                env,
                args.async_output,
                args.sns_success,
                args.sns_error,
            )
            result: Any = sagemaker.deploy(client, deployment)
        elif args.action == "autoscale":
            result = sagemaker.autoscale(scaling, args.name, args.min, args.max, args.target, args.asynchronous)
        elif args.action == "transform":
            job = args.job or f"{args.name}-{int(time.time())}"
            where = (args.input, args.output, args.instance_type, args.count)
            result = sagemaker.transform(client, job, args.name, *where)
        else:
            result = {"deleted": sagemaker.delete(client, scaling, args.name)}
    except Exception as exc:  # botocore's errors name the call and AWS's reason
        raise SageMakerFailed(str(exc)) from None
    print(json.dumps(result))


class SageMakerFailed(Exception):
    pass


def _key_value(text: str) -> str:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return text


def add_sagemaker(commands: Any, config: argparse.ArgumentParser) -> None:
    group = commands.add_parser("sagemaker", parents=[config], help="deploy the image on SageMaker (boto3)")
    actions = group.add_subparsers(dest="action", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--name", required=True, help="the model, endpoint config and endpoint name")
    common.add_argument("--region", help="default: boto3's (AWS_REGION, ~/.aws/config)")

    deploy = actions.add_parser("deploy", parents=[config, common], help="model + endpoint config + endpoint")
    deploy.add_argument("--image", required=True, help="the ECR image URI (make image, then push)")
    deploy.add_argument("--role", required=True, help="the execution role's ARN")
    deploy.add_argument("--model-data-url", help="s3://.../model.tar.gz, unpacked into /opt/ml/model")
    deploy.add_argument("--instance-type", default="ml.g5.2xlarge")
    deploy.add_argument("--instance-count", type=int, default=1)
    deploy.add_argument("--env", type=_key_value, action="append", default=[], help="MONOLITH_*=value, repeatable")
    deploy.add_argument("--async-output", help="s3://... : an asynchronous endpoint writing its answers there")
    deploy.add_argument("--sns-success", help="SNS topic ARN told when an async answer is written")
    deploy.add_argument("--sns-error", help="SNS topic ARN told when an async request fails")

    scale = actions.add_parser("autoscale", parents=[config, common], help="target tracking on the variant")
    scale.add_argument("--min", type=int, default=1, help="instances (0 allowed for an asynchronous endpoint)")
    scale.add_argument("--max", type=int, required=True)
    scale.add_argument(
        "--target", type=float, required=True, help="invocations per instance a minute, or queued per instance (async)"
    )
    scale.add_argument("--asynchronous", action="store_true", help="scale on ApproximateBacklogSizePerInstance")

    batch = actions.add_parser("transform", parents=[config, common], help="a batch transform job on the model")
    batch.add_argument("--input", required=True, help="s3:// prefix of JSON Lines records")
    batch.add_argument("--output", required=True, help="s3:// prefix for the answers")
    batch.add_argument("--job", help="the job's name (default: the model's name and the time)")
    batch.add_argument("--instance-type", default="ml.g5.2xlarge")
    batch.add_argument("--count", type=int, default=1)

    actions.add_parser("delete", parents=[config, common], help="scaling, endpoint, endpoint config, model")
    group.set_defaults(run=_sagemaker)


def build_parser() -> argparse.ArgumentParser:
    # --config is accepted before or after the sub-command: `monolith serve --config FILE`.
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument(
        "--config", type=Path, default=argparse.SUPPRESS, help=f"YAML config (default {DEFAULT_CONFIG})"
    )
    parser = argparse.ArgumentParser(prog="monolith", description="LLM Twin inference server", parents=[config])
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", parents=[config], help="run the HTTP server")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.set_defaults(run=_serve)

    ingest = commands.add_parser("ingest", parents=[config], help="chunk, embed and upsert a JSONL file of documents")
    ingest.add_argument("file", type=Path)
    ingest.set_defaults(run=_ingest)

    model = commands.add_parser("model", parents=[config], help="model checkpoint tasks").add_subparsers(
        dest="action", required=True
    )
    model.add_parser(
        "prepare", parents=[config], help="convert the packaged GGUF to a safetensors checkpoint"
    ).set_defaults(run=_prepare)

    batch = commands.add_parser(
        "batch", parents=[config], help="OpenAI Batch API request lines in, output lines out (resumable)"
    )
    batch.add_argument("input", type=Path)
    batch.add_argument("output", type=Path)
    batch.add_argument("--max-in-flight", type=int, help="requests handed to the engine at once")
    batch.set_defaults(run=_batch)

    health = commands.add_parser("health", parents=[config], help="exit 0 if the server is ready (HEALTHCHECK)")
    health.add_argument("--url", help="default: http://127.0.0.1:<server.port>/health/ready")
    health.add_argument("--timeout", type=float, default=5.0)
    health.set_defaults(run=_health)

    bench = commands.add_parser("bench", parents=[config], help="monolith vs vllm serve vs a microservice split")
    bench.add_argument("--profile", choices=["quick", "full"], default="full")
    bench.add_argument("--parts", default="completions,rag,batch", help="a comma-separated subset of these")
    bench.set_defaults(run=_bench)

    evaluation = commands.add_parser("eval", parents=[config], help="RAG retrieval measured on a labelled question set")
    evaluation.add_argument("--questions", type=Path, default=Path("corpus/eval.jsonl"))
    evaluation.add_argument("--modes", default="plain,expand,default", help="of plain, self_query, expand, default")
    evaluation.add_argument("--k", type=int, default=4)
    evaluation.add_argument("--answers", type=int, default=12, help="answerable questions to answer in full")
    evaluation.add_argument("--answer-tokens", type=int, default=128)
    evaluation.add_argument("--out", type=Path, default=Path("bench/results/eval"))
    evaluation.set_defaults(run=_eval)

    generate = commands.add_parser("generate", parents=[config], help="stream one answer to the terminal")
    generate.add_argument("prompt")
    generate.add_argument("--max-tokens", type=int)
    generate.add_argument("--temperature", type=float, default=0.7)
    generate.set_defaults(run=_generate)

    configuration = commands.add_parser("config", parents=[config], help="configuration tasks").add_subparsers(
        dest="action", required=True
    )
    configuration.add_parser(
        "reference", parents=[config], help="print the configuration reference (docs/reference/configuration.md)"
    ).set_defaults(run=_reference)

    twins = commands.add_parser("twins", parents=[config], help="the twins of the config").add_subparsers(
        dest="action", required=True
    )
    build = twins.add_parser(
        "build", parents=[config], help="train a demo LoRA for each twin on its author's documents (peft)"
    )
    build.add_argument("--steps", type=int, default=60, help="training steps per twin")
    build.add_argument("--force", action="store_true", help="train again the twins whose adapter exists")
    build.set_defaults(run=_build_twins)

    add_sagemaker(commands, config)
    return parser


def start_logging(settings: Settings) -> None:
    """The log format and level the settings name, on top of main's basicConfig (which logs a bad config)."""
    logs.configure(settings.server.log_format)
    logging.getLogger("monolith").setLevel(settings.server.log_level.upper())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=logs.TEXT_FORMAT)
    try:
        args.config_path = getattr(args, "config", DEFAULT_CONFIG)
        settings = load_settings(args.config_path)
        start_logging(settings)
        args.run(settings, args)
    except ConfigError as exc:
        print(f"monolith: {exc}", file=sys.stderr)
        return 2
    except Unhealthy as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    except SageMakerFailed as exc:
        print(f"monolith sagemaker: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
