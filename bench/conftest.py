"""pytest-benchmark suites: run with `python -m pytest bench --benchmark-only`.

Every benchmark is parametrised over the backends, so one run shows the
compiled and the pure figures side by side (group by "func" to compare).
"""

import os
import sys

import pytest

from mptcp_fast import _backend

sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture(params=["cython", "python"])
def backend(request):
    if request.param not in _backend.available():
        pytest.skip("compiled backend not built")
    with _backend.use(request.param):
        yield request.param
