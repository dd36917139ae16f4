"""`helm test` for the MLflow server: health, a tracking round trip, and the artifact proxy's view of S3.

Run with MLFLOW_URL set (the Service URL, so the Host header is the one pipeline pods send). Exits non-zero with
one line naming the step that failed. Standard library only: it runs in the tracking image as is.
"""

import base64
import json
import os
import sys
import urllib.error
import urllib.request
import uuid

BASE = os.environ["MLFLOW_URL"].rstrip("/")
# With mlflow.auth, the chart gives the pod the client Secret's user, as MLflow's own clients read it.
_user = os.environ.get("MLFLOW_TRACKING_USERNAME")
AUTH = ({"Authorization": "Basic " + base64.b64encode(
    f"{_user}:{os.environ.get('MLFLOW_TRACKING_PASSWORD', '')}".encode()).decode()} if _user else {})


def call(step: str, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(BASE + path, data=data, headers={"Content-Type": "application/json", **AUTH})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            text = resp.read().decode()
    except urllib.error.HTTPError as e:
        sys.exit(f"FAIL {step}: {path} -> HTTP {e.code}: {e.read().decode()[:300]}")
    except OSError as e:
        sys.exit(f"FAIL {step}: {BASE}{path} unreachable: {e}")
    return json.loads(text) if text.strip().startswith("{") else {"text": text}


call("health", "/health")
name = f"helm-test-{uuid.uuid4().hex[:8]}"
experiment = call("create experiment", "/api/2.0/mlflow/experiments/create", {"name": name})["experiment_id"]
run = call("create run", "/api/2.0/mlflow/runs/create", {"experiment_id": experiment})["run"]["info"]["run_id"]
call("log metric", "/api/2.0/mlflow/runs/log-metric", {"run_id": run, "key": "ok", "value": 1.0, "timestamp": 0})
got = call("read run", f"/api/2.0/mlflow/runs/get?run_id={run}")["run"]["data"]["metrics"]
if [m["value"] for m in got if m["key"] == "ok"] != [1.0]:
    sys.exit(f"FAIL read run: logged metric ok=1.0, read back {got}")
call("delete experiment", "/api/2.0/mlflow/experiments/delete", {"experiment_id": experiment})
call("list artifacts", "/api/2.0/mlflow-artifacts/artifacts")
print(f"ok: {BASE} tracks runs and reaches its artifact store")
