"""The flow machinery, above the stages: which stages run (plan.py), one stage under the artifact contract
(runner.py), one KFP task of the pipeline (task.py), checks before any compute (preflight.py), the pipeline loaded
and compiled (pipeline.py), the flow on this machine through kfp.local (local.py), and on a cluster's Kubeflow
Pipelines (submit.py)."""
