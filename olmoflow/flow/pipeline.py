"""The model-flow pipeline of pipelines/model_flow.py: loaded for kfp.local (olmoflow/flow/local.py), and compiled to
KFP IR YAML (pipelines/model_flow.yaml, for the REST API and the chart's registration hook) and Kubernetes-native
`Pipeline` + `PipelineVersion` resources (pipelines/k8s/model_flow.yaml, for KFP's Kubernetes pipeline store:
`kubectl apply -f pipelines/k8s/`).

    olmoflow compile [--settings settings.yaml] [--cluster-config cluster.json]

The PipelineVersion is named like the chart's registration names a REST version, `{version}-{sha256(IR)[:8]}`, so
both stores show the same version for the same pipeline.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path
from typing import Any

from olmoflow import __version__
from olmoflow.cluster.register import version_name
from olmoflow.cluster.settings import PipelineSettings

REPO_ROOT = Path(__file__).resolve().parents[2]
IR_PATH = REPO_ROOT / "pipelines" / "model_flow.yaml"
K8S_DIR = REPO_ROOT / "pipelines" / "k8s"
PIPELINE_NAME = "olmo3-model-flow"
"""Name in the KFP UI; the chart registers the same name (values.yaml pipeline.name)."""
NAMESPACE = "kubeflow"


def load_pipeline():
    """The pipeline function, with its default settings; the repo root holds components/ and pipelines/ next to
    the package."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from pipelines.model_flow import model_flow
    return model_flow


def pipeline(settings: PipelineSettings | None = None):
    load_pipeline()  # puts the repo root (components/, pipelines/) on sys.path
    from pipelines.model_flow import build
    return build(settings or PipelineSettings())


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    return [_sorted(v) for v in value] if isinstance(value, list) else value


_DEFAULT = re.compile(r"^(#\s+\w+: \w+ \[Default: )(.*)\]$")


def stable_header(path: Path) -> Path:
    """KFP's header comment prints dict defaults (the GPU tolerations) with keys in a per-process order; sort them
    so the same pipeline compiles to the same bytes, which the version name (sha256 of the file) relies on."""
    lines = path.read_text().split("\n")
    for i, line in enumerate(lines):
        if not line.startswith("#"):
            break
        m = _DEFAULT.match(line)
        if m and m.group(2)[:1] in "[{":
            lines[i] = f"{m.group(1)}{_sorted(ast.literal_eval(m.group(2)))!r}]"
    path.write_text("\n".join(lines))
    return path


def compile_ir(output: str | Path, settings: PipelineSettings | None = None) -> Path:
    from kfp import compiler
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(pipeline(settings), str(output))
    return stable_header(Path(output))


def compile_k8s(ir: Path, out_dir: str | Path, settings: PipelineSettings | None = None,
                namespace: str = NAMESPACE) -> Path:
    """Pipeline + PipelineVersion manifests whose version is named after the IR file `ir`."""
    from kfp import compiler
    from kfp.compiler import KubernetesManifestOptions

    vname = version_name(__version__, ir)
    out = Path(out_dir) / "model_flow.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    options = KubernetesManifestOptions(pipeline_name=PIPELINE_NAME,
                                        pipeline_version_name=f"{PIPELINE_NAME}-{vname}",
                                        pipeline_version_display_name=vname, namespace=namespace,
                                        include_pipeline_manifest=True)
    compiler.Compiler().compile(pipeline(settings), str(out), kubernetes_manifest_options=options,
                                kubernetes_manifest_format=True)
    return out


def compile_all(output: str | Path = IR_PATH, k8s_dir: str | Path = K8S_DIR,
                settings: PipelineSettings | None = None) -> tuple[Path, Path]:
    ir = compile_ir(output, settings)
    return ir, compile_k8s(ir, k8s_dir, settings)
