"""Checks before any compute: the store answers, the --init artifact is a complete checkpoint, and curate's
sources are on disk (unless curate's artifact for this config is already in the store)."""

from __future__ import annotations

from olmoflow.artifacts import ArtifactError, ArtifactStore, read_manifest
from olmoflow.config import FlowConfig
from olmoflow.flow.plan import Plan
from olmoflow.flow.runner import StageError, address
from olmoflow.storage import storage_for


def preflight(cfg: FlowConfig, plan: Plan) -> None:
    store = ArtifactStore(cfg.flow.store, cfg.flow.name)
    storage_for(cfg.flow.store).exists(store.uri("curate", "probe"))  # raises StorageError when unreachable
    if plan.init:
        manifest = read_manifest(plan.init)
        if manifest["kind"] != "checkpoint":
            raise ArtifactError(f"--init {plan.init}: is a {manifest['kind']} artifact (from stage "
                                f"{manifest['stage']}); --from {plan.start} needs a checkpoint")
    _, curate_uri = address(store, "curate", cfg, {})
    if plan.runs("curate") and not store.is_complete(curate_uri):
        from olmoflow.data.sources import check_sources
        try:
            check_sources(cfg.curate)
        except ValueError as e:
            raise StageError(str(e)) from None
