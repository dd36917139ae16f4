"""Run one stage under the artifact contract: resolve inputs, fingerprint, reuse a complete artifact or run the
stage into a staging folder, commit it (manifest last), and record it all in MLflow. Of two runs of one stage at
once (same config and inputs, one store), one holds the artifact's lease and computes; the other waits for the
artifact and reuses it, or takes over if the holder dies (olmoflow/storage/lease.py).

    olmoflow stage pretrain --config tiny --input dataset=.olmoflow/store/olmo3/curate/<fp>
    torchrun --nproc-per-node 8 -m olmoflow.cli stage pretrain ...      # every rank trains; rank 0 publishes
"""

from __future__ import annotations

import importlib
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from olmoflow.artifacts import Artifact, ArtifactStore, fingerprint, read_manifest
from olmoflow.config import FlowConfig
from olmoflow.contract.context import InputArtifact, StageContext
from olmoflow.contract.workdir import WorkDir
from olmoflow.flow.claim import GuardedWorkDir, claim
from olmoflow.registry import Stage, input_kind, step_name
from olmoflow.registry import stage as stage_entry
from olmoflow.storage import is_remote
from olmoflow.storage.lease import LeaseLost

log = logging.getLogger("olmoflow")


class StageError(RuntimeError):
    """A stage that cannot run as asked (missing or unexpected inputs); the message names the stage."""


@dataclass
class StageResult:
    stage: str
    status: str
    """ran | cached | skipped"""
    uri: str = ""
    fingerprint: str = ""
    kind: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    headline: str = ""
    wall_s: float = 0.0
    manifest: dict[str, Any] = field(default_factory=dict)


def entry(stage: str) -> Stage:
    """The stage's registry entry; an unknown name is a StageError."""
    try:
        return stage_entry(stage)
    except ValueError as e:
        raise StageError(str(e)) from None


def stage_module(stage: str) -> ModuleType:
    """The stage's code: its module's `run(ctx)`."""
    return importlib.import_module(entry(stage).module)


def check_inputs(spec: Stage, inputs: dict[str, str]) -> None:
    """The input names `spec` takes, each it needs given; a StageError naming the stage otherwise."""
    for name in inputs:
        if input_kind(spec, name) is None:
            from olmoflow.registry import gathered_inputs
            allowed = spec.inputs + spec.optional_inputs + tuple(gathered_inputs(spec))
            raise StageError(f"stage {spec.name}: unexpected input {name!r} "
                             f"(it takes: {', '.join(allowed) or 'none'})")
    for name in spec.inputs:
        if not inputs.get(name):
            raise StageError(f"stage {spec.name}: missing input {name!r} (a {name} artifact URI)")


def open_inputs(spec: Stage, store: ArtifactStore, inputs: dict[str, str]) -> dict[str, Artifact]:
    check_inputs(spec, inputs)
    # An input's name says the kind it must be: a report given as a checkpoint is refused here, before any compute.
    return {name: store.open(uri, kind=input_kind(spec, name)) for name, uri in inputs.items() if uri}


def input_fingerprints(spec: Stage, inputs: dict[str, str]) -> dict[str, str]:
    """{name: fingerprint} of the inputs, from their manifests alone (no payload is read, hashed or downloaded);
    the same checks as open_inputs: names, and each input's kind."""
    check_inputs(spec, inputs)
    return {name: read_manifest(uri.rstrip("/"), kind=input_kind(spec, name))["fingerprint"]
            for name, uri in inputs.items() if uri}


def step_of(spec: Stage, inputs: dict[str, str], of: str = "") -> str:
    """The name this run of `spec` goes by (olmoflow.registry.step_name): a per-checkpoint stage is named after
    the stage that made its checkpoint, `of` when the caller knows it (the pipeline does), else the checkpoint's
    manifest says (`olmoflow stage eval --input checkpoint=...`)."""
    if not spec.per_checkpoint:
        return spec.name
    if not of and inputs.get("checkpoint"):
        of = read_manifest(inputs["checkpoint"].rstrip("/")).get("stage", "")
    return step_name(spec.name, of)


def address(store: ArtifactStore, stage: str, cfg: FlowConfig, input_fps: dict[str, str]) -> tuple[str, str]:
    """(fingerprint, URI) of `stage`'s artifact for this config and these input fingerprints."""
    fp = fingerprint(stage, {**cfg.stage_config(stage), **sources_state(stage, cfg)}, input_fps)
    return fp, store.uri(stage, fp)


def sources_state(stage: str, cfg: FlowConfig) -> dict[str, Any]:
    """What curate's output depends on beyond its config: the optional sources absent from this machine's sources
    folder. A dataset made without them is another dataset, and must not be reused where they are present (a
    store shared by a machine with Debian's sources and one without). Empty when all are there, so a full sources
    folder keeps the fingerprint the config alone gives."""
    if stage != "curate":
        return {}
    from olmoflow.data.sources import absent_optional  # curate's side only: file listings, no heavy imports
    absent = absent_optional(cfg.curate)
    return {"absent_sources": absent} if absent else {}


def locate(stage: str, cfg: FlowConfig, inputs: dict[str, str]) -> tuple[ArtifactStore, str, str]:
    """The store, and the fingerprint and URI of `stage`'s artifact for these input URIs, from manifests alone."""
    store = ArtifactStore(cfg.flow.store, cfg.flow.name)
    return (store, *address(store, stage, cfg, input_fingerprints(entry(stage), inputs)))


def find_cached(stage: str, cfg: FlowConfig, inputs: dict[str, str], flow_run: str | None = None,
                tags: dict[str, str] | None = None, of: str = "") -> StageResult | None:
    """`stage`'s result when its artifact is already in the store (recorded as cached), else None. Only manifests
    are read, the inputs' and its own: a cached KFP task imports neither torch nor MLflow, and downloads nothing."""
    started = time.time()
    store, fp, uri = locate(stage, cfg, inputs)
    if not store.is_complete(uri):
        return None
    step = step_of(entry(stage), inputs, of)
    return reuse(step, fp, uri, cfg.stage_config(stage), _recorder(cfg, flow_run), started, tags)


def work_dir(store: ArtifactStore, stage: str, fp: str, uri: str) -> WorkDir:
    """In-stage checkpoints at `{uri}.work/`; for s3:// a local staging folder, steps published to the store."""
    if not is_remote(uri):
        return WorkDir(Path(uri.removeprefix("file://") + ".work"))
    return WorkDir(store.cache_dir / "work" / store.flow / stage / fp, remote=uri + ".work")


def _tracker(cfg: FlowConfig, flow_run: str | None):
    if not flow_run:
        return None
    from olmoflow.tracking import Tracker
    return Tracker(cfg.flow.name, flow_run)


def _recorder(cfg: FlowConfig, flow_run: str | None):
    """Who records a stage that did not run here (cached, skipped): MLflow, or under `olmoflow run` the flow's
    spool, so such a task never imports MLflow (olmoflow.tracking.recorder)."""
    if not flow_run:
        return None
    from olmoflow.tracking import recorder
    return recorder(cfg.flow.name, flow_run)


def record_skipped(stage: str, cfg: FlowConfig, flow_run: str | None, why: str) -> StageResult:
    tracker = _recorder(cfg, flow_run)
    if tracker:
        tracker.record_stage(stage, "", "", {}, "skipped", tags={"olmoflow.skip_reason": why})
    return StageResult(stage, "skipped")


def from_manifest(stage: str, status: str, uri: str, fp: str, started: float) -> StageResult:
    """The result of a stage whose artifact is in the store (cached, or published by a job), from its manifest."""
    m = read_manifest(uri)  # an ArtifactError naming the URI if there is none
    return StageResult(stage, status, uri, fp, m["kind"], m.get("metrics", {}), m.get("headline", ""),
                       time.time() - started, m)


def record_result(tracker, result: StageResult, stage_cfg: dict[str, Any],
                  tags: dict[str, str] | None = None) -> None:
    """MLflow's record of a stage whose artifact was made elsewhere (earlier, or by a job): its metrics, and the run
    that made it."""
    tracker.record_stage(result.stage, result.fingerprint, result.uri, stage_cfg, result.status, result.metrics, {
        "olmoflow.made_by_run": result.manifest.get("mlflow_run_id") or "", "olmoflow.headline": result.headline,
        **(tags or {}), "olmoflow.wall_s": f"{result.wall_s:.1f}"})


def _world(spec: Stage):
    """This process among torchrun's ranks; a stage that does not split its work over ranks is refused there,
    rather than run whole on every rank."""
    from olmoflow.train.world import World
    world = World.current()
    if world.size > 1 and spec.scale != "torchrun":
        raise StageError(f"stage {spec.name} runs in one process; it cannot run on {world.size} ranks (torchrun): "
                         f"give it one node")
    return world


def _open_on_every_rank(world, inputs: dict[str, str], open_all):
    """The input artifacts, opened (and verified) once per machine. Rank 0 opens them first; in a local store
    that is the copy every rank reads. s3:// inputs download into each machine's cache: its local rank 0 fills it,
    then the other ranks find it there."""
    arts = world.first(open_all)
    if world.size == 1 or not any(is_remote(u) for u in inputs.values() if u):
        return arts
    mine = world.all_ok(lambda: open_all() if world.local_rank == 0 and not world.lead else None)
    rest = world.all_ok(lambda: open_all() if world.local_rank != 0 else None)
    return mine or rest or arts


def run_stage(stage: str, cfg: FlowConfig, inputs: dict[str, str], flow_run: str | None = None,
              of: str = "") -> StageResult:
    """Run (or reuse) `stage` on input artifact URIs {name: uri}; `flow_run` set → log to MLflow. A per-checkpoint
    stage's run goes by its step name (eval-sft; `of` names the checkpoint's stage, else its manifest does).

    Under torchrun every rank resolves the same inputs and address and runs the stage (its collectives need all
    of them); only rank 0 decides on the cache, opens the MLflow run, writes the payload, commits and logs, and
    every rank returns rank 0's result. A rank that fails mid-stage exits, and torchrun stops the others.
    """
    start = time.time()
    if cfg.flow.threads:
        import torch
        torch.set_num_threads(cfg.flow.threads)
    spec, mod = entry(stage), stage_module(stage)
    world = _world(spec)
    store = ArtifactStore(cfg.flow.store, cfg.flow.name)
    arts = _open_on_every_rank(world, inputs, lambda: open_inputs(spec, store, inputs))
    stage_cfg = cfg.stage_config(stage)
    fp, uri = address(store, stage, cfg, {n: a.fingerprint for n, a in arts.items()})
    step = step_of(spec, inputs, of)

    if world.first(lambda: store.is_complete(uri)):
        return world.first(lambda: reuse(step, fp, uri, stage_cfg, _recorder(cfg, flow_run), start))
    lease = claim(world, step, uri, lambda: store.is_complete(uri))
    if lease is None:  # another run made it while this one waited
        return world.first(lambda: reuse(step, fp, uri, stage_cfg, _recorder(cfg, flow_run), start))
    with lease:  # released however this ends; a SIGKILLed run's lapses after its ttl
        tracker = _tracker(cfg, flow_run) if world.lead else None

        def open_run() -> tuple[Path, str | None]:
            staging = store.staging_dir(stage, fp)
            run_id = tracker.start_stage(step, fp, uri, stage_cfg, status="running") if tracker else None
            if tracker:
                for a in arts.values():
                    if a.kind == "dataset":
                        tracker.log_dataset(run_id, a.uri, f"{a.stage}-{a.fingerprint}", a.fingerprint, "training")
            return staging, run_id

        staging, run_id = world.first(open_run)
        if not world.lead:
            # Scratch for whatever a stage writes on every rank; only rank 0's payload is published.
            staging = Path(tempfile.mkdtemp(prefix=f"olmoflow-{stage}-rank{world.rank}-"))
        stage_log = None
        if world.lead:
            stage_log = logging.FileHandler(staging / "stage.log")
            stage_log.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            log.addHandler(stage_log)
        ctx = StageContext(
            stage=stage, cfg=cfg, out=staging, work=GuardedWorkDir(work_dir(store, stage, fp, uri), step, lease),
            lead=world.lead,
            inputs={n: InputArtifact(a.uri, a.kind, a.fingerprint, a.manifest, a.path) for n, a in arts.items()},
            metrics_sink=(lambda m, i: tracker.log_metrics(run_id, m, i)) if tracker else None,
            artifact_sink=(lambda p, sub: tracker.log_artifact(run_id, p, sub)) if tracker else None,
            step=step, tracker=tracker, run_id=run_id)
        if lease.took_over is not None and world.lead and (last := ctx.work.latest_name()):
            log.info("%s: resuming from %s's in-stage checkpoint %s", step, lease.took_over.id, last)
        log.info("%s: running -> %s", step, uri)
        try:
            metrics = {k: float(v) for k, v in (mod.run(ctx) or {}).items()}
        except BaseException:
            _close_log(stage_log)
            if tracker:
                tracker.log_artifact(run_id, staging / "stage.log", None)
            _mark_failed(tracker, run_id)
            shutil.rmtree(staging, ignore_errors=True)
            raise
        _close_log(stage_log)
        if not world.lead:
            shutil.rmtree(staging, ignore_errors=True)
        # Rank 0 publishes only once every rank has finished; a rank that failed has exited, and this fails.
        world.barrier()

        def publish() -> StageResult:
            wall = time.time() - start
            try:
                lease.check(step)  # taken over while this run stalled: the other run commits, not this one
            except LeaseLost:
                _mark_failed(tracker, run_id)
                shutil.rmtree(staging, ignore_errors=True)
                raise
            try:
                if tracker:
                    tracker.log_artifact(run_id, staging / "stage.log", None)
                manifest = store.commit(staging, uri, {
                    "stage": stage, "step": step, "fingerprint": fp, "kind": spec.output,
                    "inputs": {n: {"uri": a.uri, "fingerprint": a.fingerprint} for n, a in arts.items()},
                    "config": stage_cfg, "metrics": metrics, "headline": spec.headline, "mlflow_run_id": run_id,
                    "flow_run": flow_run, "started_at": start, "wall_s": round(wall, 2)})
            except BaseException:
                _mark_failed(tracker, run_id)
                raise
            ctx.work.clear()
            if tracker:
                import json
                # Final metrics at the last step, so MLflow's "latest value" is the final one, not a mid-run one.
                last = max((step for step, _ in ctx.history if step is not None), default=0)
                tracker.log_metrics(run_id, metrics, last)
                tracker.log_text(run_id, json.dumps(manifest, indent=2), "manifest.json")
                tracker.log_text(run_id, json.dumps(stage_cfg, indent=2), "config.json")
                tracker.set_tags(run_id, {"olmoflow.status": "ran", "olmoflow.headline": spec.headline,
                                          "olmoflow.wall_s": f"{wall:.1f}"})
                tracker.end_stage(run_id)
            log.info("%s: done in %.1fs -> %s", step, wall, uri)
            return StageResult(step, "ran", uri, fp, spec.output, metrics, spec.headline, wall, manifest)

        result = world.first(publish)
        if not world.lead:
            ctx.work.clear(everywhere=False)  # this machine's copies; rank 0 dropped the store's
        return result


def _mark_failed(tracker, run_id: str | None) -> None:
    if tracker:
        tracker.set_tags(run_id, {"olmoflow.status": "failed"})
        tracker.end_stage(run_id, "FAILED")


def reuse(stage: str, fp: str, uri: str, stage_cfg: dict[str, Any], tracker, start: float,
          tags: dict[str, str] | None = None) -> StageResult:
    """The cached result of a complete artifact, recorded by `tracker` (a Tracker, a Spool, or None); `stage` is
    the step's name (eval-sft for a per-checkpoint stage)."""
    # Only the manifest: whoever reads the payload (the next stage) verifies its checksums then, so a cached
    # multi-GB checkpoint is hashed once per run, not twice.
    result = from_manifest(stage, "cached", uri, fp, start)
    log.info("%s: cached at %s", stage, uri)
    if tracker:
        record_result(tracker, result, stage_cfg, tags)
    return result


def _close_log(handler: logging.Handler | None) -> None:
    if handler is not None:
        log.removeHandler(handler)
        handler.close()
