"""The `olmoflow` command.

    olmoflow run [--config tiny] [--set key=value ...] [--from STAGE] [--to STAGE] [--init URI]
    olmoflow stage STAGE [--config tiny] [--set ...] [--input dataset=URI ...] [--flow-run RUN_ID]
    torchrun --nproc-per-node N -m olmoflow.cli stage STAGE ...   (rank 0 alone publishes and prints the URI)
    olmoflow compile [--output pipelines/model_flow.yaml] [--k8s-dir pipelines/k8s] [--settings F] [--cluster-config F]
    olmoflow submit --host URL [--config tiny] [--set ...] [--from STAGE] [--to STAGE] [--init URI]
    olmoflow status RUN_ID --host URL
    olmoflow config [--config tiny] [--set ...]          print the resolved config (a dry run)
    olmoflow export-hf CHECKPOINT_URI OUT_DIR
    olmoflow import-hf HF_DIR [--out URI]
    olmoflow trace --index URI [--json] [--checkpoint URI] [--file F] [TEXT]   where the training data holds TEXT
    olmoflow trace-ui --index URI [--port N] [--checkpoint URI]   the same as a local web page (a checkpoint: prompts)
    olmoflow lineage URI [--json]       an artifact's chain of artifacts, MLflow runs and configs back to the sources
    olmoflow verify-code --program P.py --tests T.py [--timeout S]   run T.py's asserts against P.py in the sandbox

Exit codes: 0 ok, 1 a failed stage or a bad artifact, 2 a bad config or command line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from olmoflow import __version__
from olmoflow.config import ConfigError, load_config
from olmoflow.registry import LAST, STAGES

REPO_ROOT = Path(__file__).resolve().parent.parent


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="tiny", help="preset name (configs/NAME.yaml), a YAML path, or inline JSON")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config value, e.g. --set pretrain.lr=1e-3 (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="olmoflow", description="The Olmo 3 model flow on Kubeflow Pipelines.")
    parser.add_argument("--version", action="version", version=f"olmoflow {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the flow locally with kfp.local (the same DAG as the cluster)")
    _config_args(run)
    run.add_argument("--from", dest="start", default="curate", metavar="STAGE",
                     help=f"first stage ({', '.join(STAGES)})")
    run.add_argument("--to", dest="stop", default=LAST, metavar="STAGE", help="last stage")
    run.add_argument("--init", default="", metavar="URI", help="artifact fed to the --from stage")
    run.add_argument("--verbose", action="store_true", help="show KFP's own task logs unfiltered")

    stage = sub.add_parser("stage", help="run one stage alone and print its artifact URI")
    stage.add_argument("stage", metavar="STAGE", help=", ".join(STAGES))
    _config_args(stage)
    stage.add_argument("--input", action="append", default=[], metavar="NAME=URI",
                       help="an input artifact, e.g. --input dataset=URI --input checkpoint=URI")
    stage.add_argument("--flow-run", default="", metavar="RUN_ID",
                       help="log the stage to MLflow as a run nested under this flow run's parent run")

    comp = sub.add_parser("compile", help="compile the pipeline for a cluster (KFP IR YAML)")
    comp.add_argument("--output", default=str(REPO_ROOT / "pipelines" / "model_flow.yaml"))
    comp.add_argument("--k8s-dir", default=str(REPO_ROOT / "pipelines" / "k8s"),
                      help="where the Kubernetes-native Pipeline/PipelineVersion manifests go")
    comp.add_argument("--settings", default="", metavar="YAML",
                      help="pipeline pod settings (olmoflow/cluster/settings.py PipelineSettings keys)")
    comp.add_argument("--cluster-config", default="", metavar="JSON",
                      help="the chart's cluster.json: take the GPU pool and S3 Secret from it")

    sub_ = sub.add_parser("submit", help="upload the compiled pipeline to KFP (if new) and start a run")
    _config_args(sub_)
    sub_.add_argument("--host", required=True, help="KFP API endpoint, e.g. http://localhost:8888")
    sub_.add_argument("--from", dest="start", default="curate", metavar="STAGE", help="first stage")
    sub_.add_argument("--to", dest="stop", default=LAST, metavar="STAGE", help="last stage")
    sub_.add_argument("--init", default="", metavar="URI", help="artifact fed to the --from stage")
    sub_.add_argument("--nodes", action="append", default=[], metavar="STAGE=N",
                      help="run STAGE as an N-node job (repeatable); default: the pipeline's")
    sub_.add_argument("--gpus-per-node", type=int, default=None, metavar="N", help="GPUs per node of every GPU stage")
    sub_.add_argument("--image-tag", default=None, metavar="TAG", help="tag of the olmoflow images to run")
    sub_.add_argument("--pipeline", default="olmo3-model-flow", help="pipeline name in the KFP UI")
    sub_.add_argument("--package", default=str(REPO_ROOT / "pipelines" / "model_flow.yaml"),
                      help="compiled pipeline YAML to upload")
    sub_.add_argument("--experiment", default="olmoflow", help="KFP experiment of the run")
    sub_.add_argument("--namespace", default="kubeflow", help="KFP namespace (multi-user mode)")

    st = sub.add_parser("status", help="show a KFP run's state and its tasks' states")
    st.add_argument("run_id", metavar="RUN_ID")
    st.add_argument("--host", required=True, help="KFP API endpoint")
    st.add_argument("--namespace", default="kubeflow", help="KFP namespace (multi-user mode)")

    cfg = sub.add_parser("config", help="print the resolved config and exit (a dry run)")
    _config_args(cfg)

    exp = sub.add_parser("export-hf", help="write a checkpoint artifact as an HF Olmo3 directory (chat-ready for a "
                                           "post-trained one)")
    exp.add_argument("checkpoint")
    exp.add_argument("out_dir")
    exp.add_argument("--chat-format", choices=("auto", "base", "chat"), default="auto",
                     help="ship the chat template, eos <|im_end|> (auto: when made by sft/dpo/rlvr or it has one)")
    exp.add_argument("--max-shard-gb", type=float, default=5.0,
                     help="largest safetensors file; a larger model is sharded, and written in bfloat16")

    imp = sub.add_parser("import-hf", help="make a checkpoint artifact from an HF Olmo3 directory")
    imp.add_argument("hf_dir")
    imp.add_argument("--out", default="", help="store root (default: the config's flow.store)")
    _config_args(imp)

    tr = sub.add_parser("trace", help="the spans of a text that occur verbatim in the training data (OlmoTrace)")
    tr.add_argument("text", nargs="?", default=None, help="the text (a model's output); or --file")
    tr.add_argument("--file", default="", help="read the text from this file ('-': stdin)")
    tr.add_argument("--json", action="store_true", help="print {spans: [{text, start, end, count, docs}]}")
    _trace_args(tr)

    ui = sub.add_parser("trace-ui", help="a local web page: paste a model's output, see its traced spans")
    ui.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (0: any free one)")
    _trace_args(ui)
    ui.add_argument("--max-new-tokens", type=int, default=64, help="with --checkpoint: tokens it answers a prompt with")
    ui.add_argument("--chat-format", choices=("auto", "base", "chat"), default="auto",
                    help="with --checkpoint: prompt it with the chat template (auto: when a post-training stage made "
                    "it or it ships one)")

    lin = sub.add_parser("lineage", help="the artifacts, MLflow runs and configs from an artifact back to the "
                         "sources (a dataset's removal counts and its trace index too)")
    lin.add_argument("uri", metavar="URI", help="an artifact URI (an eval report, a checkpoint, a dataset, an index)")
    lin.add_argument("--json", action="store_true", help="print {root, nodes: [...], edges: [{from, to, input}]}")

    vc = sub.add_parser("verify-code", help="run unit tests against an untrusted program in the sandbox; "
                        "print {passed, reason, seconds} as one JSON line")
    vc.add_argument("--program", required=True, help="the program (e.g. a model's completion), a .py file")
    vc.add_argument("--tests", required=True, help="Python statements (asserts) against the program's functions")
    vc.add_argument("--timeout", type=float, default=10.0, help="wall-clock seconds (default 10)")
    return parser


def _trace_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", required=True, help="a trace-index artifact URI (or a folder holding an index)")
    p.add_argument("--checkpoint", default="", help="the model that wrote the text (trace-ui: the model the page "
                   "prompts): refused unless it uses the index's tokenizer (a checkpoint artifact URI, or a folder "
                   "holding tokenizer.json)")
    p.add_argument("--docs", type=int, default=10, help="documents shown per span (K)")
    p.add_argument("--min-words", type=int, default=3, help="words a span needs")
    p.add_argument("--density", type=float, default=0.05, help="spans kept per token of the text")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from olmoflow.artifacts import ArtifactError
    from olmoflow.flow.runner import StageError
    from olmoflow.storage import StorageError
    try:
        return COMMANDS[args.command](args)
    except ConfigError as e:
        print(f"olmoflow: {e}", file=sys.stderr)
        return 2
    except (ArtifactError, StorageError, StageError) as e:
        print(f"olmoflow: {e}", file=sys.stderr)
        return 1


def cmd_run(args) -> int:
    from olmoflow.flow.local import run_flow
    cfg = load_config(args.config, args.overrides)
    return run_flow(cfg, args.start, args.stop, args.init, verbose=args.verbose, config_name=args.config)


def cmd_stage(args) -> int:
    from olmoflow.config import stage_index
    from olmoflow.flow.runner import run_stage
    from olmoflow.flow.task import setup_logging
    stage_index(args.stage, "STAGE")
    cfg = load_config(args.config, args.overrides)
    inputs = {}
    for item in args.input:
        if "=" not in item:
            raise ConfigError(f"config error: --input {item!r}: expected NAME=URI")
        name, uri = item.split("=", 1)
        inputs[name] = uri
    if args.stage == "curate":  # its sources are checked before any compute, as `olmoflow run` does
        from olmoflow.flow.plan import Plan
        from olmoflow.flow.preflight import preflight
        preflight(cfg, Plan("curate", "curate", ""))
    setup_logging()
    from olmoflow.train.world import World, shutdown
    result = run_stage(args.stage, cfg, inputs, args.flow_run or None)
    if World.current().lead:
        print(result.uri)
    # Only after a success: leaving the group waits for the other ranks, and a failed rank should just exit.
    shutdown()
    return 0


def cmd_compile(args) -> int:
    from olmoflow.cluster.settings import load_settings
    from olmoflow.flow.pipeline import compile_all
    try:
        settings = load_settings(args.settings or None, args.cluster_config or None)
    except ValueError as e:
        raise ConfigError(f"config error: {e}") from None
    for path in compile_all(args.output, args.k8s_dir, settings):
        print(path)
    return 0


def cmd_submit(args) -> int:
    from olmoflow.cluster.register import kfp_client
    from olmoflow.flow.submit import pool_params, run_name, run_params, submit
    params = {**run_params(args.config, args.overrides, args.start, args.stop, args.init),
              **pool_params(args.nodes, args.gpus_per_node, args.image_tag)}
    uploaded, run_id = submit(kfp_client(args.host, args.namespace), Path(args.package), args.pipeline, params,
                              run_name(args.config, args.start, args.stop), args.experiment)
    print(uploaded)
    print(f"run {run_id}: `olmoflow status {run_id} --host {args.host}`")
    return 0


def cmd_status(args) -> int:
    from olmoflow.cluster.register import kfp_client
    from olmoflow.flow.submit import describe
    print("\n".join(describe(kfp_client(args.host, args.namespace).get_run(args.run_id))))
    return 0


def cmd_config(args) -> int:
    import yaml
    cfg = load_config(args.config, args.overrides)
    print(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), end="")
    return 0


def cmd_export_hf(args) -> int:
    from olmoflow.artifacts import open_artifact
    from olmoflow.evals.gen import chat_style
    from olmoflow.model.hf import ChatSpec, export_checkpoint
    from olmoflow.post.chat_template import CHAT_TEMPLATE, STOP
    if args.max_shard_gb <= 0:
        print(f"olmoflow: export-hf: --max-shard-gb must be positive, got {args.max_shard_gb}", file=sys.stderr)
        return 2
    art = open_artifact(args.checkpoint, kind="checkpoint")
    chat, reason = chat_style(args.chat_format, art.manifest.get("stage"), art.path)
    try:
        export_checkpoint(art.path, Path(args.out_dir), ChatSpec(CHAT_TEMPLATE, STOP) if chat else None,
                          max_shard_bytes=int(args.max_shard_gb * 1e9))
    except (ValueError, FileNotFoundError) as e:  # HFFormatError is a ValueError: one line naming the file
        print(f"olmoflow: export-hf: {e}", file=sys.stderr)
        return 1
    print(f"{args.out_dir} ({'chat template' if chat else 'no chat template'}; {reason})")
    return 0


def cmd_import_hf(args) -> int:
    from olmoflow.importer import import_hf
    cfg = load_config(args.config, args.overrides)
    print(import_hf(Path(args.hf_dir), args.out or cfg.flow.store, cfg.flow.name))
    return 0


def _checkpoint_payload(uri: str) -> tuple[Path, dict]:
    """A checkpoint's local payload folder and manifest ({} for a plain folder holding tokenizer.json)."""
    local = Path(uri.removeprefix("file://"))
    if (local / "tokenizer.json").is_file() and not (local / "manifest.json").is_file():
        return local, {}
    from olmoflow.artifacts import open_artifact
    art = open_artifact(uri, kind="checkpoint")
    return art.path, art.manifest


def _open_trace_index(args):
    """The index, and the checkpoint's payload and manifest (None, {} without --checkpoint), its tokenizer checked."""
    from olmoflow.trace.index import TraceIndex
    index = TraceIndex.open(args.index)
    local, manifest = None, {}
    if args.checkpoint:
        local, manifest = _checkpoint_payload(args.checkpoint)
        index.check_tokenizer(local / "tokenizer.json", f"checkpoint {args.checkpoint}")
    return index, local, manifest


def cmd_trace(args) -> int:
    import json

    from olmoflow.trace.index import TraceError
    from olmoflow.trace.spans import find_spans
    if (args.text is None) == (not args.file):
        raise ConfigError("config error: trace: give the text, or --file F (not both)")
    text = args.text if args.file == "" else sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
    try:
        index, _, _ = _open_trace_index(args)
    except TraceError as e:
        print(f"olmoflow: {e}", file=sys.stderr)
        return 1
    spans = find_spans(index, text, min_words=args.min_words, density=args.density, max_docs=args.docs)
    if args.json:
        print(json.dumps({"spans": [s.as_json() for s in spans]}, ensure_ascii=False))
        return 0
    for s in spans:
        print(f"[{s.start}:{s.end}] x{s.count} {s.text!r}")
        for d in s.as_json()["docs"]:
            print(f"    {d['source']} {d['doc_id']}: {' '.join(d['snippet'].split())}")
    if not spans:
        print("no span of the text occurs in the training data")
    return 0


def cmd_trace_ui(args) -> int:
    from olmoflow.trace.index import TraceError
    from olmoflow.trace.server import serve
    try:
        index, local, manifest = _open_trace_index(args)
    except TraceError as e:
        print(f"olmoflow: {e}", file=sys.stderr)
        return 1
    if args.max_new_tokens < 1:
        raise ConfigError("config error: trace-ui: --max-new-tokens must be at least 1")
    completer = None
    if local is not None:
        from olmoflow.trace.prompting import Completer
        completer = Completer.load(local, manifest.get("stage"), args.checkpoint, args.chat_format,
                                   args.max_new_tokens)
    serve(index, args.port, completer, min_words=args.min_words, density=args.density, max_docs=args.docs)
    return 0


def cmd_lineage(args) -> int:
    import json

    from olmoflow.trace.lineage import format_lineage, lineage
    graph = lineage(args.uri)
    print(json.dumps(graph, indent=1) if args.json else "\n".join(format_lineage(graph)))
    return 0


def cmd_verify_code(args) -> int:
    from olmoflow.post.sandbox import run_tests
    program = Path(args.program).read_text(encoding="utf-8", errors="replace")
    tests = Path(args.tests).read_text(encoding="utf-8", errors="replace")
    print(run_tests(program, tests, timeout=args.timeout).to_json())
    return 0


COMMANDS = {"run": cmd_run, "stage": cmd_stage, "compile": cmd_compile, "config": cmd_config,
            "export-hf": cmd_export_hf, "import-hf": cmd_import_hf, "submit": cmd_submit, "status": cmd_status,
            "trace": cmd_trace, "trace-ui": cmd_trace_ui, "lineage": cmd_lineage, "verify-code": cmd_verify_code}

if __name__ == "__main__":
    sys.exit(main())
