"""Knobs of the model-flow stage: the report that gathers every stage's eval, and the models it registers."""

from __future__ import annotations

from pydantic import Field

from olmoflow._base import Section


class ModelFlowConfig(Section):
    register_models: bool = True
    """Register each evaluated stage's checkpoint in the MLflow Model Registry (its Hugging Face export logged on
    the model-flow run, one model version per stage, an alias per stage); only under a flow run, where MLflow is
    on. Off: the report alone (an export per stage copies every checkpoint's weights once more)."""
    model_name: str = Field("", max_length=200)
    """The registered model's name; empty = the flow's name (flow.name)."""
