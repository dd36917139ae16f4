"""Running stages on Kubernetes: pipeline tasks' pods, multi-node jobs and pipeline registration.

settings.py  PipelineSettings: every pipeline task's pod (GPUs, pool, requests, retries, images, Secret, ConfigMap)
config.py    ClusterConfig: backend, images, GPU pool, secrets (the chart renders it as cluster.json)
jobs.py      TrainJob / PyTorchJob (torchrun, HSDP) and RayJob manifests, as plain dicts
launcher.py  create a job, wait for it, stream its pods' logs, delete it; JobFailed carries the job's own reason
register.py  upload the compiled pipeline to Kubeflow Pipelines (the chart's post-install hook)
"""
