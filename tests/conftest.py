"""Shared fixtures: every hot-path test runs once per backend (docs/design.md).

Tests must call through the API module (``options.parse_option``), because the
``backend`` fixture rebinds the module's functions for the duration of a test.
In CI (CI=true) a missing compiled backend fails the run instead of skipping.
"""

import os

import pytest

from mptcp_fast import _backend

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_sessionstart(session):
    if IN_CI and not _backend.COMPILED_AVAILABLE:
        raise pytest.UsageError(f"CI=true but the compiled backend cannot run "
                                f"({_backend.UNUSABLE_REASON}): it is required in CI")


@pytest.fixture(params=["cython", "python"])
def backend(request):
    """Run the test with every API module bound to one backend."""
    if request.param not in _backend.available():
        pytest.skip("compiled backend not built (pure-only install)")
    with _backend.use(request.param):
        yield request.param


def outcome(fn, *args, **kwargs):
    """A call's result, or ("error", exception class, message): comparable across backends."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 — the class and message are what we compare
        return ("error", type(exc), str(exc))


@pytest.fixture
def on_both():
    """on_both(lambda: options.parse_option(b)) -> (cython outcome, python outcome)."""
    if not _backend.COMPILED_AVAILABLE:
        pytest.skip("compiled backend not built (pure-only install)")

    def run(call):
        results = []
        for name in ("cython", "python"):
            with _backend.use(name):
                results.append(outcome(call))
        return tuple(results)

    return run


@pytest.fixture(params=["cython", "cython-portable", "python"])
def crypto_backend(request):
    """Like ``backend``, and the compiled SHA-256 runs both with SHA-NI (where the CPU has it)
    and with the portable C compression."""
    name = request.param.split("-")[0]
    if name not in _backend.available():
        pytest.skip("compiled backend not built (pure-only install)")
    with _backend.use(name):
        if request.param == "cython-portable":
            compiled = _backend.implementation("_crypto", "cython")
            previous = compiled.acceleration() == "sha-ni"
            compiled.set_acceleration(False)
            try:
                yield request.param
            finally:
                compiled.set_acceleration(previous)
        else:
            yield request.param
