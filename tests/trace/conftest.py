"""One tiny curate artifact and its index, built once for the trace tests."""

from __future__ import annotations

import pytest
from tracekit import make_dataset

from olmoflow.trace.build import build_index


@pytest.fixture(scope="session")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("trace-data"))


@pytest.fixture(scope="session")
def index_dir(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("trace-index") / "index"
    build_index(dataset, out, ["pretrain", "midtrain", "long", "post"], cpus=1)
    return out


@pytest.fixture(scope="session")
def index(index_dir):
    from olmoflow.trace.index import TraceIndex

    ix = TraceIndex.open(str(index_dir))
    yield ix
    ix.close()
