"""Lineage: from any artifact (an eval report, a checkpoint, an index) back to the sources, through manifests alone.

Every manifest names its inputs ({name: {uri, fingerprint}}), so the chain is a walk over manifests: for each
artifact its stage, kind, fingerprint, URI, the MLflow run that made it (a cached task never writes a manifest, so
`mlflow_run_id` is always the run that computed it) and its resolved config; for a curate dataset also its stats.json
(documents and tokens each rule removed, each source's documents in and out) and the trace-index artifacts of the same
store built from exactly that dataset (`inputs.dataset.fingerprint`). No payload is downloaded: stats.json is read
alone and checked against the manifest's sha256.

    olmoflow lineage URI [--json]

The JSON is a graph, because a dataset feeds several stages (an eval report reaches curate both directly and
through every training stage): {"root": URI, "nodes": [node, ...], "edges": [{"from", "to", "input"}, ...]}, nodes
in walk order (the root, then its inputs depth first, each artifact once: eval, sft, pretrain, ..., curate), an
edge from an input artifact to the artifact that read it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from olmoflow.artifacts import MANIFEST, ArtifactError, read_manifest
from olmoflow.storage import StorageError, join, storage_for

STATS = "stats.json"
INDEX_STAGE = "trace-index"


def _parent(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[0]


def _root(uri: str) -> str:
    uri = uri.strip().rstrip("/")
    return uri[: -len(MANIFEST) - 1] if uri.endswith("/" + MANIFEST) else uri


def node_of(uri: str, manifest: dict[str, Any]) -> dict[str, Any]:
    """One artifact of the chain, from its manifest."""
    # a per-checkpoint stage's step (eval-sft) says which checkpoint it scored
    return {"uri": uri, "stage": manifest.get("step") or manifest["stage"], "kind": manifest["kind"],
            "fingerprint": manifest["fingerprint"],
            "mlflow_run_id": manifest.get("mlflow_run_id") or None, "flow_run": manifest.get("flow_run") or None,
            "config": manifest.get("config", {}), "config_at": f"{join(uri, MANIFEST)} (config)",
            "headline": _headline(manifest), "committed_at": manifest.get("committed_at"),
            "inputs": {n: i.get("uri", "") for n, i in sorted(manifest.get("inputs", {}).items())}}


def _headline(manifest: dict[str, Any]) -> dict[str, Any] | None:
    name = manifest.get("headline")
    value = manifest.get("metrics", {}).get(name) if name else None
    return None if value is None else {"metric": name, "value": value}


def dataset_stats(uri: str, manifest: dict[str, Any]) -> dict[str, Any] | None:
    """A curate dataset's removal counts: rules {rule: {docs, tokens}} (most documents first) and sources
    {name: {domain, docs_in, docs_out, tokens_out}}; None when the dataset has no stats.json."""
    meta = manifest.get("files", {}).get(STATS)
    if meta is None:
        return None
    raw = storage_for(uri).read_bytes(join(uri, STATS))
    if hashlib.sha256(raw).hexdigest() != meta["sha256"]:
        raise ArtifactError(f"{uri}: file {STATS} fails its checksum (corrupt or tampered)")
    stats = json.loads(raw)
    rules = sorted(stats.get("rules", {}).items(), key=lambda kv: (-kv[1].get("docs", 0), kv[0]))
    return {"rules": {r: {"docs": v.get("docs", 0), "tokens": v.get("tokens", 0)} for r, v in rules},
            "sources": {name: {k: s.get(k) for k in ("domain", "docs_in", "docs_out", "tokens_out")}
                        for name, s in sorted(stats.get("sources", {}).items())},
            "train_tokens": stats.get("train_tokens")}


def matching_indexes(uri: str, fingerprint: str) -> list[dict[str, Any]]:
    """The complete trace-index artifacts beside the dataset at `uri` ({store}/{flow}/curate/{fp}) that were built
    from that dataset, newest first."""
    where = join(_parent(_parent(uri)), INDEX_STAGE)
    storage = storage_for(where)
    found = []
    for rel in storage.list(where):
        parts = rel.split("/")
        if len(parts) != 2 or parts[1] != MANIFEST:
            continue
        at = join(where, parts[0])
        try:
            m = read_manifest(at)
        except ArtifactError:
            continue
        if m.get("inputs", {}).get("dataset", {}).get("fingerprint") == fingerprint:
            found.append({"uri": at, "fingerprint": m["fingerprint"], "mlflow_run_id": m.get("mlflow_run_id") or None,
                          "parts": m.get("config", {}).get("trace_index", {}).get("parts"),
                          "committed_at": m.get("committed_at")})
    return sorted(found, key=lambda i: -(i["committed_at"] or 0))


def lineage(uri: str) -> dict[str, Any]:
    """The graph of artifacts from `uri` back to its sources (see the module's docstring). The root must be a
    complete artifact (an ArtifactError otherwise); an input that cannot be read is a node with an "error"."""
    uri = _root(uri)
    first = read_manifest(uri)
    nodes: dict[str, dict[str, Any]] = {}
    edges: list[dict[str, str]] = []

    def visit(at: str, manifest: dict[str, Any] | None, want: str) -> None:
        if at in nodes:
            return
        if manifest is None:
            try:
                manifest = read_manifest(at)
            except (ArtifactError, StorageError) as e:
                nodes[at] = {"uri": at, "fingerprint": want or None, "error": str(e)}
                return
        node = node_of(at, manifest)
        if want and want != node["fingerprint"]:
            node["error"] = f"{at}: holds fingerprint {node['fingerprint']}, but its reader recorded {want}"
        if node["kind"] == "dataset":
            try:
                node["data"] = dataset_stats(at, manifest)
            except (ArtifactError, StorageError, ValueError) as e:
                node["data"] = {"error": str(e)}
            node["indexes"] = matching_indexes(at, node["fingerprint"])
        nodes[at] = node
        for name, spec in sorted(manifest.get("inputs", {}).items()):  # depth first: a checkpoint's chain first
            src = _root(spec.get("uri", ""))
            edges.append({"from": src, "to": at, "input": name})
            visit(src, None, spec.get("fingerprint", ""))

    visit(uri, first, "")
    return {"root": uri, "nodes": list(nodes.values()), "edges": edges}


# ---- text ------------------------------------------------------------------------------------------------------

def _flat(d: Any, prefix: str = "") -> list[str]:
    if isinstance(d, dict) and d:
        return [x for k, v in d.items() for x in _flat(v, f"{prefix}{k}.")]
    return [f"{prefix[:-1]}={json.dumps(d, separators=(',', ':'))}"]


def compact_config(config: dict[str, Any], where: str, width: int = 160) -> str:
    """`a.b=1 a.c="x" ...` up to `width` characters, then how many more and where they all are."""
    items = _flat(config) if config else []
    shown: list[str] = []
    for x in items:
        if len(" ".join([*shown, x])) > width:
            break
        shown.append(x)
    rest = len(items) - len(shown)
    return " ".join(shown) + (f" … {rest} more in {where}" if rest else "") if items else "(none recorded)"


def _n(x: Any) -> str:
    return f"{x:,}" if isinstance(x, int) else "—" if x is None else str(x)


def format_lineage(graph: dict[str, Any]) -> list[str]:
    """The graph as lines a person reads: each artifact, then its runs, config, inputs and (a dataset) its data."""
    lines: list[str] = []
    for node in graph["nodes"]:
        if "stage" not in node:
            lines += [f"? {node['uri']}", f"    error: {node['error']}", ""]
            continue
        lines.append(f"{node['stage']} {node['kind']} {node['fingerprint']}  {node['uri']}")
        if node.get("error"):
            lines.append(f"    error: {node['error']}")
        run = node["mlflow_run_id"] or "— (not logged to MLflow)"
        lines.append(f"    mlflow run: {run}" + (f" (flow run {node['flow_run']})" if node["flow_run"] else ""))
        if node["headline"]:
            v = node["headline"]["value"]
            shown = f"{int(v):,}" if float(v).is_integer() and abs(v) >= 1000 else f"{v:.6g}"
            lines.append(f"    {node['headline']['metric']}: {shown}")
        lines.append(f"    config: {compact_config(node['config'], node['config_at'])}")
        for name, src in node["inputs"].items():
            lines.append(f"    input {name}: {src}")
        data = node.get("data")
        if data and "error" in data:
            lines.append(f"    {STATS}: {data['error']}")
        elif data:
            lines.append("    removed by rule (docs / tokens): " + (", ".join(
                f"{r} {_n(v['docs'])} / {_n(v['tokens'])}" for r, v in data["rules"].items()) or "none"))
            for name, s in data["sources"].items():
                lines.append(f"    source {name} ({s['domain']}): {_n(s['docs_in'])} docs in, {_n(s['docs_out'])} "
                             f"out, {_n(s['tokens_out'])} tokens")
        elif node["kind"] == "dataset":
            lines.append(f"    {STATS}: none in this dataset")
        if node["kind"] == "dataset":
            if not node["indexes"]:
                lines.append("    trace index: none built from this dataset in this store (stage trace-index)")
            for ix in node["indexes"]:
                lines.append(f"    trace index: {ix['uri']} (mlflow run {ix['mlflow_run_id'] or '—'})")
        lines.append("")
    return lines[:-1] if lines else lines
