"""olmoflow: the Olmo 3 model flow as one Kubeflow Pipelines DAG, with resumable artifacts and MLflow."""

__version__ = "0.1.0"
