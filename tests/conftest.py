"""Shared by every test module."""

import pytest

from cli_harness import one_torch_thread


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """One torch thread, as the subprocesses' OMP_NUM_THREADS=1: the tests' tiny models train and
    sample several times faster than on two threads fighting over two cores."""
    with one_torch_thread():
        yield
