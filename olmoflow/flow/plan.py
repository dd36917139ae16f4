"""Which stages of the flow run: `--from`, `--to` and `--init`.

curate always runs when the flow reaches a stage that reads data (it is cached after the first run), and so does
trace-index, which reads only curate's dataset, when the flow reaches it (eval traces its samples with its index);
checkpoint stages before `--from` are skipped, and `--init` feeds an artifact to the `--from` stage. A
per-checkpoint stage (eval) runs for each checkpoint stage that runs (eval-sft when sft runs), and a gathering one
(model-flow) once its stage is within `--to`.

`flow.skip` leaves checkpoint stages out of the flow (RL-Zero: sft, dpo): a left-out stage and its eval do not run,
and its task hands on the checkpoint it was given (`handed_on`), so the next stage reads the checkpoint of the last
stage that ran while the DAG keeps every task.
"""

from __future__ import annotations

from dataclasses import dataclass

from olmoflow.config import ConfigError, stage_index
from olmoflow.registry import LAST, STAGES
from olmoflow.registry import stage as stage_entry


@dataclass(frozen=True)
class Plan:
    start: str = "curate"
    stop: str = LAST
    init: str = ""
    skip: tuple[str, ...] = ()
    """flow.skip: checkpoint stages left out (validated with the config)."""

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

    def runs(self, stage: str, of: str = "") -> bool:
        """Whether `stage` runs; for a per-checkpoint stage, its run on the checkpoint of stage `of`."""
        i = STAGES.index(stage)
        if i > STAGES.index(self.stop) or stage in self.skip:
            return False
        if of:
            from olmoflow.registry import CHECKPOINT_STAGES
            if stage == self.start:  # --from eval --init URI: one run, on that checkpoint (in the last slot)
                return of == CHECKPOINT_STAGES[-1]
            return self.runs(of)
        e = stage_entry(stage)
        if e.gathers:
            return True  # within --to; it gathers whatever ran
        # a data stage (curate, trace-index: no checkpoint in or out) runs on every path
        return (e.output != "checkpoint" and "checkpoint" not in e.inputs + e.optional_inputs) \
            or i >= STAGES.index(self.start)

    def skip_reason(self, stage: str, of: str = "") -> str:
        if STAGES.index(stage) > STAGES.index(self.stop):
            return f"after --to {self.stop}"
        if stage in self.skip or of in self.skip:
            return f"{of} is left out by flow.skip" if of else "left out by flow.skip"
        return f"{of} is before --from {self.start}" if of else f"before --from {self.start}"

    def handed_on(self, stage: str, upstream: dict[str, str]) -> str:
        """The checkpoint URI a stage left out by flow.skip hands the next stage: the one it was given (--init's
        when it is the --from stage; "" when none reached it, as before --from). "" for any other stage."""
        if stage not in self.skip:
            return ""
        return self.inputs(stage, upstream).get("checkpoint", "")

    def inputs(self, stage: str, upstream: dict[str, str], of: str = "") -> dict[str, str]:
        """Input URIs of `stage`: upstream artifacts, with --init replacing the checkpoint of the --from stage."""
        inputs = {k: v for k, v in upstream.items() if v}
        if stage == self.start and self.init:
            inputs["checkpoint"] = self.init
        return inputs

    def evaluated(self, stage: str, of: str) -> str:
        """The stage whose checkpoint a per-checkpoint run takes: `of`, or "" when --init replaced it (the
        checkpoint's manifest then names it)."""
        return "" if stage == self.start and self.init else of

    def ordered(self) -> list[str]:
        """The steps that run, in flow order (a per-checkpoint stage once per checkpoint stage that runs)."""
        out = []
        for s in STAGES:
            e = stage_entry(s)
            if e.per_checkpoint:
                from olmoflow.registry import CHECKPOINT_STAGES, step_name
                out += [step_name(s, self.evaluated(s, c)) for c in CHECKPOINT_STAGES if self.runs(s, c)]
            elif self.runs(s):
                out.append(s)
        return out
