"""The compiled engine (mptcp_fast._cengine, built from the engine's own sources) is the same
engine as the pure one: ``Endpoint``, ``Network`` and ``BulkApp`` build the active backend's
twin, everything they make comes from that twin, and a transfer over the emulated network
takes exactly the same course on both (virtual time, bytes per subflow, retransmissions,
packets): only the wall-clock time differs.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from mptcp_fast import _backend
from mptcp_fast.sim import demo
from mptcp_fast.engine import Config, Endpoint
from mptcp_fast.sim.apps import BulkApp
from mptcp_fast.sim.netem import Network

pytestmark = pytest.mark.skipif("cython" not in _backend.available(),
                                reason="compiled backend not built (pure-only install)")


def test_constructors_build_the_active_backends_twin():
    with _backend.use("cython"):
        ep = Endpoint(["198.18.0.1"], Config())
        net, app = Network(), BulkApp(ep)
        conn = ep.connect(("198.18.0.2", 80), 0.0)
        made = [ep, net, app, conn, conn.pm, conn.fb, conn.subflows[0], conn.subflows[0].window]
        assert {type(o).__module__ for o in made} == {
            "mptcp_fast._cengine.endpoint", "mptcp_fast._cengine.netem",
            "mptcp_fast._cengine.apps", "mptcp_fast._cengine.connection",
            "mptcp_fast._cengine.pathmanager", "mptcp_fast._cengine.fallback",
            "mptcp_fast._cengine.subflow", "mptcp_fast._cengine.cc"}
    with _backend.use("python"):
        ep = Endpoint(["198.18.0.1"], Config())
        conn = ep.connect(("198.18.0.2", 80), 0.0)
        made = [ep, Network(), BulkApp(ep), conn, conn.pm, conn.fb, conn.subflows[0]]
        assert [type(o).__module__ for o in made] == [
            "mptcp_fast.engine.endpoint", "mptcp_fast.sim.netem", "mptcp_fast.sim.apps",
            "mptcp_fast.engine.connection", "mptcp_fast.engine.pathmanager",
            "mptcp_fast.engine.fallback", "mptcp_fast.engine.subflow"]


def test_the_public_classes_recognise_the_objects_of_either_backend():
    """``isinstance(Endpoint(...), Endpoint)`` on both backends, and through any import of the
    name: the public class is one object, whichever backend builds."""
    from mptcp_fast import engine
    from mptcp_fast.sim import apps, netem
    assert engine.Endpoint is Endpoint and apps.BulkApp is BulkApp and netem.Network is Network
    for backend in _backend.available():
        with _backend.use(backend):
            ep = Endpoint(["198.18.0.1"], Config())
            net, app = Network(), BulkApp(ep)
            assert isinstance(ep, Endpoint) and isinstance(net, Network) \
                and isinstance(app, BulkApp)
            assert not isinstance(ep, Network) and not isinstance(net, BulkApp)
            assert issubclass(type(ep), Endpoint)
    assert Endpoint.__doc__ == Endpoint.backend_class("python").__doc__ != None  # noqa: E711
    assert "addresses" in str(__import__("inspect").signature(Endpoint))


def test_the_public_classes_cannot_be_subclassed():
    with pytest.raises(TypeError, match="cannot be subclassed; wrap one instead"):
        class Mine(Endpoint):           # noqa: F841 (never made)
            pass


def test_the_pure_class_still_checks_its_arguments_when_it_builds_the_twin():
    with _backend.use("cython"):
        with pytest.raises(ValueError, match="at least one address"):
            Endpoint([], Config())
        with pytest.raises(TypeError, match="config must be"):
            Endpoint(["198.18.0.1"], object())


def _course(backend: str, **kwargs) -> tuple:
    with _backend.use(backend):
        r = demo.run_transfer(kwargs.pop("size", 1 << 20), kwargs.pop("paths"), **kwargs)
    return (r["completion_seconds"], r["packets"], r["sha256"], r["reinjected_bytes"],
            [(s["bytes"], s["retransmits"], s["srtt"]) for s in r["subflows"]])


LOSSY = [demo.PathSpec(100e6, 0.010, loss=0.01), demo.PathSpec(50e6, 0.040, loss=0.005)]


@pytest.mark.parametrize("kwargs", [
    {"paths": LOSSY},
    {"paths": LOSSY, "checksums": True, "cc": "cubic"},
    {"paths": LOSSY, "scheduler": "redundant", "size": 256 << 10},
    {"paths": LOSSY, "profile": "v0"},
    {"paths": [demo.PathSpec(1e9, 0.001), demo.PathSpec(1e9, 0.002)], "offload": True,
     "size": 4 << 20},
], ids=["loss", "checksums-cubic", "redundant", "v0", "offload"])
def test_a_transfer_takes_the_same_course_on_both_engines(kwargs):
    compiled = _course("cython", **dict(kwargs))
    assert compiled == _course("python", **dict(kwargs))
    assert compiled[2] is not None                       # and the data arrived whole


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 1000), loss=st.sampled_from([0.0, 0.002, 0.02]),
       scheduler=st.sampled_from(["lowest-rtt", "round-robin", "ecf"]),
       cc=st.sampled_from(["lia", "olia", "balia", "reno"]))
def test_same_course_for_any_seed_loss_scheduler_and_controller(seed, loss, scheduler, cc):
    paths = [demo.PathSpec(20e6, 0.005, loss=loss), demo.PathSpec(10e6, 0.020, loss=loss)]
    kwargs = dict(paths=paths, size=256 << 10, seed=seed, scheduler=scheduler, cc=cc)
    assert _course("cython", **dict(kwargs)) == _course("python", **dict(kwargs))


def test_the_compiled_subflow_states_are_the_pure_ones():
    """The compiled build's TCP states are a C enum declared in subflow.pxd (the pure source
    assigns them only when it runs as Python): the same names with the same numbers."""
    import importlib
    from mptcp_fast.engine import subflow as pure
    compiled = importlib.import_module("mptcp_fast._cengine.subflow")
    for number, text in enumerate(pure.STATE_NAMES):
        name = text.replace("-", "_").replace("RECEIVED", "RCVD")
        assert getattr(pure, name) == getattr(compiled, name) == number


def _dropped_mapping_course(backend: str) -> tuple:
    """A transfer whose receiver acknowledges one mapping and drops its bytes (the data-level
    retransmission timer sends them again, on the other subflow): everything that happened."""
    import enginenet
    from mptcp_fast.sim.netem import remap_to_past

    def install(net, client, server, made, conn):
        made[(enginenet.C1, enginenet.S0)].middlebox = remap_to_past(nth=3)
    paths = {(enginenet.C0, enginenet.S0): dict(rate=20e6, delay=0.005, loss=0.002),
             (enginenet.C1, enginenet.S0): dict(rate=20e6, delay=0.010)}
    with _backend.use(backend):
        run = enginenet.transfer(paths, up=1 << 20, down=256 << 10, before_run=install,
                                 seeded_endpoints=True)
        run.check_exact(1 << 20, 256 << 10)
    conn = run.conn
    return (run.end, run.client.endpoint.packets_sent, run.server.endpoint.packets_sent,
            conn.data_retransmits, conn.reinjected_bytes,
            [(sf.bytes_sent, sf.stats_retransmits) for sf in conn.all_subflows])


def test_a_dropped_mapping_takes_the_same_course_on_both_engines():
    compiled = _dropped_mapping_course("cython")
    assert compiled == _dropped_mapping_course("python")
    assert compiled[3] >= 1                              # the data-level timer fired
