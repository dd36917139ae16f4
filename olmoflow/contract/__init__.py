"""The stage contract, below the library: what a stage's `run(ctx)` is handed (context.py: StageContext, its input
artifacts) and where it keeps in-stage checkpoints (workdir.py: WorkDir). train/, post/, data/ and evals/ may use it;
it imports none of them, nor the stages or the flow above."""
