"""Which stages of the flow run: `--from`, `--to` and `--init`.

curate always runs when the flow reaches a stage that reads data (it is cached after the first run), and so does
trace-index, which reads only curate's dataset, when the flow reaches it (eval traces its samples with its index);
checkpoint stages before `--from` are skipped, and `--init` feeds an artifact to the `--from` stage.
"""

from __future__ import annotations

from dataclasses import dataclass

from olmoflow.config import ConfigError, stage_index
from olmoflow.registry import STAGES
from olmoflow.registry import stage as stage_entry


@dataclass(frozen=True)
class Plan:
    start: str = "curate"
    stop: str = "eval"
    init: str = ""

    def __post_init__(self) -> None:
        a, b = stage_index(self.start, "--from"), stage_index(self.stop, "--to")
        if a > b:
            raise ConfigError(f"config error: --from {self.start} comes after --to {self.stop}")
        first = stage_entry(self.start)
        if self.init and "checkpoint" not in first.inputs + first.optional_inputs:
            raise ConfigError(f"config error: --init: {self.start} takes no checkpoint")
        if "checkpoint" in first.inputs and not self.init:
            raise ConfigError(f"config error: --from {self.start} needs --init URI (a checkpoint artifact); "
                              "to reuse your own earlier stages just run the flow again: they are cached")

    def runs(self, stage: str) -> bool:
        i = STAGES.index(stage)
        if i > STAGES.index(self.stop):
            return False
        e = stage_entry(stage)  # a data stage (curate, trace-index: no checkpoint in or out) runs on every path
        return (e.output != "checkpoint" and "checkpoint" not in e.inputs + e.optional_inputs) \
            or i >= STAGES.index(self.start)

    def skip_reason(self, stage: str) -> str:
        after = STAGES.index(stage) > STAGES.index(self.stop)
        return f"after --to {self.stop}" if after else f"before --from {self.start}"

    def inputs(self, stage: str, upstream: dict[str, str]) -> dict[str, str]:
        """Input URIs of `stage`: upstream artifacts, with --init replacing the checkpoint of the --from stage."""
        inputs = {k: v for k, v in upstream.items() if v}
        if stage == self.start and self.init:
            inputs["checkpoint"] = self.init
        return inputs

    def ordered(self) -> list[str]:
        return [s for s in STAGES if self.runs(s)]
