# olmoflow — `make run` runs the whole flow (tiny preset) on this machine; `make test` runs the test suite.
# Both set everything up themselves on a fresh machine: the venv, pinned packages, the demo data.

PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
CONFIG  ?= tiny
ARGS    ?=
STAMP   := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
# pytest workers (0 = one process). With 2 (one per core: each test holds one torch thread; --dist loadfile keeps a
# file's module fixtures, the smoke flow, on one worker) the suite takes ~10 min instead of ~22, but two Ray
# clusters started at once by two workers can hang a test (seen once: tests/data/test_execute.py's `ray start`
# head beside another worker's local Ray; likely their shared default worker-port range), so CI runs serially
# until the Ray fixtures get disjoint ports: `make test TEST_WORKERS=2` for the fast run.
TEST_WORKERS ?= 0
# torch's version, and an index to take it from first: set TORCH_INDEX to PyTorch's CPU-only wheel index (its
# URL is on PyTorch's install page) and a Linux machine without an NVIDIA driver installs the ~200 MB CPU build
# instead of PyPI's default build with its CUDA libraries (~3 GB). Empty, or unreachable: PyPI's default.
TORCH_VERSION ?= 2.13.0
TORCH_INDEX   ?=

.PHONY: run test test-fast test-pods data venv bench compile images chart ui clean help

help:
	@echo "make run      run the whole flow (CONFIG=$(CONFIG)) with kfp.local; ARGS='--set k=v --from sft --init URI'"
	@echo "make test     install, fetch data, run the tests"
	@echo "make data     fetch the demo data into .olmoflow/sources"
	@echo "make ui       MLflow UI on the local tracking database (prints each flow's runs URL)"
	@echo "make compile  compile pipelines/model_flow.yaml for a cluster"
	@echo "make bench    every benchmark against its named peer; writes bench/RESULTS.md (BENCH_ARGS=--quick)"
	@echo "make images   build the container images (docker or buildah; IMAGE_BASE=, IMAGE_TORCH=cpu)"
	@echo "make test-pods  build the images from a Debian-made base, run stages in them as task pods (podman)"
	@echo "make chart    lint and render the Helm chart"

venv: $(STAMP)

# What running needs, torch first: resolving it through another package could pull a multi-GB CUDA build.
$(STAMP): requirements.lock pyproject.toml scripts/install_torch.sh
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	bash scripts/install_torch.sh $(BIN)/pip $(TORCH_VERSION) "$(TORCH_INDEX)"
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $@

# What only the tests and benchmarks need: pytest (+ xdist), moto, transformers (the oracle), lm-eval (the reference
# harness), ruff; --no-deps: the lock is their whole closure, so pip never resolves torch.
$(TEST_STAMP): $(STAMP) requirements-test.lock
	$(BIN)/pip install -q --no-deps -r requirements-test.lock
	touch $@

data: $(STAMP)
	$(BIN)/python -m olmoflow.data.fetch --dest .olmoflow/sources

run: data
	$(BIN)/olmoflow run --config $(CONFIG) $(ARGS)

test: data $(TEST_STAMP)
	PYTHON=$(BIN)/python bash scripts/install_k8s_tools.sh $(BIN)
	bash scripts/install_browser.sh
	$(BIN)/ruff check .
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=15

test-fast: $(TEST_STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not slow"

bench: data $(TEST_STAMP)
	$(BIN)/pip install -q --no-deps -r requirements-bench.txt
	$(BIN)/python bench/report.py $(BENCH_ARGS)  # every bench, then bench/RESULTS.md; BENCH_ARGS=--quick

compile: $(STAMP)
	$(BIN)/olmoflow compile

# make images: curate, tracking and trainer, tagged with the package version, one after the other. IMAGE_BASE: another
# Python base (images/local-base.sh makes one from Debian's packages where no image registry is reachable);
# IMAGE_TORCH=cpu: torch's +cpu build (from TORCH_INDEX, or the host pip's wheel folder) instead of PyPI's CUDA one.
IMAGE_BASE  ?=
IMAGE_TORCH ?= cuda
LOCAL_BASE  := localhost/olmoflow-base:bookworm-py3.11
IMAGE_ARGS   = $(if $(IMAGE_BASE),--build-arg PYTHON_IMAGE=$(IMAGE_BASE)) --build-arg TORCH_VARIANT=$(IMAGE_TORCH) \
               $(if $(and $(TORCH_INDEX),$(filter cpu,$(IMAGE_TORCH))),--build-arg TORCH_INDEX_URL=$(TORCH_INDEX))

images: $(STAMP)
	for image in curate tracking trainer; do \
		BUILD_ARGS="$(IMAGE_ARGS)" bash images/build.sh $$image \
			$$($(BIN)/python -c "import olmoflow; print(olmoflow.__version__)") || exit 1; \
	done
	if command -v podman >/dev/null; then podman images | grep -E '^REPOSITORY|olmoflow'; fi

# The pod-realism test on this machine: a base made from Debian's packages, the images with torch's CPU build, then
# curate and pretrain run in them as task pods against moto S3 and the tracking image's MLflow.
test-pods: $(TEST_STAMP)
	PYTHON=$(BIN)/python bash scripts/install_k8s_tools.sh $(BIN)
	podman image exists $(LOCAL_BASE) || bash images/local-base.sh $(LOCAL_BASE)
	$(MAKE) images IMAGE_BASE=$(LOCAL_BASE) IMAGE_TORCH=cpu
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest -q tests/cluster/test_pod_realism.py

chart: $(STAMP)
	PYTHON=$(BIN)/python bash scripts/install_k8s_tools.sh $(BIN)
	$(BIN)/helm lint charts/olmoflow
	$(BIN)/helm template olmoflow charts/olmoflow > /dev/null && echo "chart renders"

# The flows' experiments open on their training runs; their URLs are printed before the server starts.
ui: $(STAMP)
	@MLFLOW_TRACKING_URI=sqlite:///.olmoflow/mlflow.db $(BIN)/python -c \
		"from olmoflow.tracking import print_runs_view_urls; print_runs_view_urls('http://127.0.0.1:5000')"
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow ui --backend-store-uri sqlite:///.olmoflow/mlflow.db --host 127.0.0.1 --port 5000

clean:
	rm -rf .olmoflow/store .olmoflow/kfp .olmoflow/cache .olmoflow/mlflow.db
