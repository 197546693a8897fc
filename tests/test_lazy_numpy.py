"""numpy is imported by the first batch over arrays, not by importing the engine.

A program that only runs the engine (the emulator, the asyncio layer, the CLI's connect and
serve) never needs numpy: importing it costs about a tenth of a second and starts BLAS
threads that spin after the import. Each backend is checked in a fresh interpreter, since
this test session has imported numpy long ago.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from mptcp_fast import _check
from mptcp_fast._lazy import lazy_module

_PROBE = r"""
import json, sys
import mptcp_fast, mptcp_fast.engine, mptcp_fast.sim.apps, mptcp_fast.sim.netem
import mptcp_fast.cli.main
from mptcp_fast.engine import Endpoint
from mptcp_fast.sim.apps import BulkApp
from mptcp_fast.sim.netem import Network
from mptcp_fast.wire import crypto

# a whole transfer over the emulator, checks with numbers of every kind the engine takes
client = BulkApp(Endpoint(["198.18.0.1"]), send_bytes=100_000)
server = BulkApp(Endpoint(["198.18.0.2"]))
server.endpoint.listen(80)
net = Network(seed=1)
net.add_host(client, ["198.18.0.1"])
net.add_host(server, ["198.18.0.2"])
net.add_path("198.18.0.1", "198.18.0.2", rate=100e6, delay=0.001)
client.open(("198.18.0.2", 80), 0.0)
net.run(until=5.0)
received = [t.received for t in server.transfers.values()]
after_engine = "numpy" in sys.modules

tokens, idsns = crypto.token_idsn_batch([1, 2, 3])     # the first batch imports it
print(json.dumps({"backend": mptcp_fast.BACKEND, "after_engine": after_engine,
                  "received": received, "after_batch": "numpy" in sys.modules,
                  "batch": [[int(t) for t in tokens], [int(i) for i in idsns]],
                  "single": [list(crypto.key_token_idsn(k)) for k in (1, 2, 3)]}))
"""


@pytest.mark.parametrize("pure", [False, True], ids=["compiled", "pure"])
def test_the_engine_runs_without_importing_numpy(pure):
    env = dict(os.environ)
    env.pop("MPTCP_FAST_PURE", None)
    if pure:
        env["MPTCP_FAST_PURE"] = "1"
    run = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["backend"] == ("python" if pure else "cython")
    assert out["received"] == [100_000]
    assert out["after_engine"] is False
    assert out["after_batch"] is True
    assert out["batch"] == [list(pair) for pair in zip(*out["single"])]


def test_checks_take_numpy_scalars_once_numpy_is_imported():
    assert _check.integer("x", np.int64(7)) == 7 and type(_check.integer("x", np.uint8(7))) is int
    assert _check.in_range("x", np.uint32(5), 0, 10) == 5
    assert _check.flag("x", np.bool_(True)) is True
    for bad in (np.float64(1.0), np.bool_(True), 1.0, True, "1", None):
        with pytest.raises(TypeError, match="x must be an int"):
            _check.integer("x", bad)
    for bad in (np.int64(1), 1, None):
        with pytest.raises(TypeError, match="x must be a bool"):
            _check.flag("x", bad)


def test_a_lazy_module_imports_on_the_first_attribute_read():
    lazy = lazy_module("json")
    assert "not imported yet" in repr(lazy)
    assert lazy.dumps([1]) == "[1]"
    assert "imported" in repr(lazy) and "not" not in repr(lazy)
    missing = lazy_module("mptcp_fast_no_such_module")
    with pytest.raises(ModuleNotFoundError):
        missing.anything
