"""Shared fixtures: a moto S3 server on 127.0.0.1 (`s3_uri`) for any test that needs object storage, and one torch
thread for every test."""

import pytest
from fixtures.s3 import moto_server, s3_uri  # noqa: F401


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread for the test, restored after. The models here are tiny and the 2 cores are shared: a second
    thread costs more in waiting than it gives (measured: 0.3 s vs 5-16 s for 30 tiny steps under load), and
    results must not depend on the thread count."""
    import torch  # here, not at the top: collecting a test that needs no torch should not pay for importing it

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
