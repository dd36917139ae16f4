# olmoflow — `make run` runs the whole flow (tiny preset) on this machine; `make test` runs the test suite.
# Both set everything up themselves on a fresh machine: the venv, pinned packages, the demo data.

PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
CONFIG  ?= tiny
ARGS    ?=
STAMP   := $(VENV)/.installed

.PHONY: run test test-fast data venv bench compile images chart ui clean help

help:
	@echo "make run      run the whole flow (CONFIG=$(CONFIG)) with kfp.local; ARGS='--set k=v --from sft --init URI'"
	@echo "make test     install, fetch data, run the tests"
	@echo "make data     fetch the demo data into .olmoflow/sources"
	@echo "make ui       MLflow UI on the local tracking database"
	@echo "make compile  compile pipelines/model_flow.yaml for a cluster"
	@echo "make bench    benchmarks against named peers (ratios)"
	@echo "make images   build the container images (docker or buildah)"
	@echo "make chart    lint and render the Helm chart"

venv: $(STAMP)

# torch first, pinned to the CPU wheel: resolving it through another package could pull a multi-GB CUDA build.
$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $@

data: $(STAMP)
	$(BIN)/python -m olmoflow.data.fetch --dest .olmoflow/sources

run: data
	$(BIN)/olmoflow run --config $(CONFIG) $(ARGS)

test: data
	PYTHON=$(BIN)/python bash scripts/install_k8s_tools.sh $(BIN)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

bench: data
	$(BIN)/pip install -q --no-deps -r requirements-bench.txt
	$(BIN)/python bench/train_step.py
	$(BIN)/python bench/dedup.py
	$(BIN)/python bench/post_logprobs.py

compile: $(STAMP)
	$(BIN)/olmoflow compile

images: $(STAMP)
	bash images/build.sh all $$($(BIN)/python -c "import olmoflow; print(olmoflow.__version__)")

chart: $(STAMP)
	PYTHON=$(BIN)/python bash scripts/install_k8s_tools.sh $(BIN)
	$(BIN)/helm lint charts/olmoflow
	$(BIN)/helm template olmoflow charts/olmoflow > /dev/null && echo "chart renders"

ui: $(STAMP)
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow ui --backend-store-uri sqlite:///.olmoflow/mlflow.db --host 127.0.0.1 --port 5000

clean:
	rm -rf .olmoflow/store .olmoflow/kfp .olmoflow/cache .olmoflow/mlflow.db
