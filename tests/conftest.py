"""Shared fixtures: every hot-path test runs once per backend (docs/design.md), and the one
place that says what a test needs of the machine.

Tests must call through the API module (``options.parse_option``), because the
``backend`` fixture rebinds the module's functions for the duration of a test.

What the machine must have (root, /dev/net/tun, kernel MPTCP, tshark...) is declared with
``@pytest.mark.requires("root", "tun", ...)`` on a test or module (names: CAPABILITIES below).
Where something is missing the test is skipped, and the run ends with a summary of every skip
grouped by its reason. In CI (CI=true) nothing may be missing: such a test fails instead, and a
missing compiled backend fails the run before any test.
"""

import functools
import importlib.util
import os
import shutil
from collections import Counter

import pytest

from mptcp_fast import _backend

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _kernel_mptcp() -> str | None:
    """None when this kernel hands out MPTCP sockets (IPPROTO_MPTCP), else why not."""
    from mptcp_fast.net import kernel
    try:
        kernel.mptcp_socket().close()
    except kernel.KernelMptcpError as exc:
        return f"no kernel MPTCP here: {exc}"
    return None


def _program(*names: str, package: str):
    def missing() -> str | None:
        absent = [name for name in names if shutil.which(name) is None]
        return f"{', '.join(absent)} not installed ({package})" if absent else None
    return missing


def _c_compiler() -> str | None:
    """None when the C compiler setuptools builds with (CC, else Python's own) is installed."""
    import sysconfig
    command = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    return None if shutil.which(command) else f"no C compiler ({command} not installed)"


def _module(name: str):
    def missing() -> str | None:
        return None if importlib.util.find_spec(name) else f"Python package {name} not installed"
    return missing


# Each capability: a check returning None when the machine has it, else the reason it has not.
CAPABILITIES = {
    "root": lambda: None if os.geteuid() == 0 else "needs root (network namespaces, TUN devices)",
    "tun": lambda: None if os.path.exists("/dev/net/tun") else "no /dev/net/tun (TUN devices)",
    "kernel_mptcp": _kernel_mptcp,
    "iproute2": _program("ip", "nstat", package="iproute2"),
    "tcpdump": _program("tcpdump", package="tcpdump"),
    "tshark": _program("tshark", "editcap", package="tshark"),
    "ethtool": _program("ethtool", package="ethtool"),
    "curl": _program("curl", package="curl"),
    "nftables": _program("nft", package="nftables"),
    "iperf3": _program("iperf3", package="iperf3"),
    "setpriv": _program("setpriv", package="util-linux"),
    "pyroute2": _module("pyroute2"),
    "pyarrow": _module("pyarrow"),
    "uvloop": _module("uvloop"),
    "cython": _module("Cython"),          # building: the test extra installs it
    "c_compiler": _c_compiler,
    "compiled": lambda: None if _backend.COMPILED_AVAILABLE else
    "compiled backend not built (pure-only install)",
}

# What the tests that build network namespaces, TUN devices and kernel peers need.
TESTBED = ("root", "tun", "iproute2", "kernel_mptcp")


@functools.cache
def missing(name: str) -> str | None:
    """Why this machine lacks the capability ``name`` (a CAPABILITIES key), or None."""
    if name not in CAPABILITIES:
        raise pytest.UsageError(f"unknown capability {name!r}: one of {sorted(CAPABILITIES)}"
                                " or 'testbed'")
    return CAPABILITIES[name]()


def require(*capabilities: str) -> None:
    """Skip the running test where the machine lacks one of ``capabilities`` (names of
    CAPABILITIES, or "testbed" for all of TESTBED); fail it in CI, where .ci/run installed
    everything and a skip would hide a broken machine."""
    for capability in capabilities:
        for name in TESTBED if capability == "testbed" else (capability,):
            reason = missing(name)
            if reason:
                if IN_CI:
                    pytest.fail(f"CI must have {name!r}: {reason}", pytrace=False)
                pytest.skip(reason)


def pytest_sessionstart(session):
    if IN_CI and not _backend.COMPILED_AVAILABLE:
        raise pytest.UsageError(f"CI=true but the compiled backend cannot run "
                                f"({_backend.UNUSABLE_REASON}): it is required in CI")


def pytest_runtest_setup(item):
    for marker in item.iter_markers("requires"):
        require(*marker.args)


def pytest_terminal_summary(terminalreporter):
    """Every skip, grouped by its reason: what this run did not check, and why."""
    reasons = Counter()
    for report in terminalreporter.stats.get("skipped", []):
        if isinstance(report.longrepr, tuple):
            reasons[report.longrepr[2].removeprefix("Skipped: ")] += 1
    if reasons:
        terminalreporter.section("what was not tested here, and why")
        for reason, count in reasons.most_common():
            terminalreporter.write_line(f"{count:5d} skipped: {reason}")


@pytest.fixture(params=["cython", "python"])
def backend(request):
    """Run the test with every API module bound to one backend."""
    if request.param == "cython":
        require("compiled")
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
    require("compiled")

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
    if name == "cython":
        require("compiled")
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
