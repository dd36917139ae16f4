"""KFP components: one per stage, each a thin wrapper over olmoflow.flow.task.run_task."""
