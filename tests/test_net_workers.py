"""``mptcp_fast.net.workers.serve_workers``: an asyncio handler of one's own in N userspace
workers behind one public address, the nftables table in place while they serve. The site of
test_proxy_workers.py: kernel MPTCP clients (a second subflow endpoint) in namespace C, the
workers' devices and the table in namespace B.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import pytest

from mptcp_fast.errors import MptcpError
from mptcp_fast.net.workers import plan_workers, serve_workers
from mptcp_fast.testing.testbed import run_name
from test_proxy_workers import PORT, PUBLIC, _echo_via_public, _tables, site  # noqa: F401

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKERS = {0: ("198.18.20.2", "198.18.20.3"), 1: ("198.18.21.2", "198.18.21.3")}

# the server a user writes: an echo handler that says which addresses its subflows have
SERVER = textwrap.dedent("""
    import json, sys
    from mptcp_fast.net.workers import serve_workers

    async def echo(reader, writer):
        client = writer.get_extra_info("peername")[1]
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
        subflows = writer.get_extra_info("subflows")
        writer.write_eof()
        await writer.wait_closed()
        print(json.dumps({{"client": client,
                          "locals": [local[0] for local, _ in subflows]}}), flush=True)

    sys.exit(serve_workers(echo, public=({public!r}, {port}),
                           worker_addresses={addresses!r}, netns={netns!r}, tun={tun!r},
                           spread="round-robin",
                           on_ready=lambda: print("ready", flush=True)))
""")


@pytest.mark.requires("testbed", "nftables")
def test_serve_workers_runs_a_handler_in_two_workers(site):  # noqa: F811
    """Two workers of an echo handler, eight kernel MPTCP clients, four at a time: every echo
    byte-exact; both workers served (round robin: four each); each connection's join went to
    the own address of the worker that took it (its initial subflow at that worker's
    balanced address), as both the worker and the client's kernel saw it. SIGTERM ends the
    supervisor with 143, and the table is gone."""
    source = SERVER.format(public=PUBLIC, port=PORT,
                           addresses=[own for own, _ in WORKERS.values()],
                           netns=site.balancer.name, tun=run_name("mfa", "%d"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    server = subprocess.Popen([sys.executable, "-c", source], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert server.stdout.readline() == "ready\n", server.stderr.read()
        assert len(_tables(site.balancer)) == 1
        with ThreadPoolExecutor(4) as pool:
            clients = list(pool.map(lambda i: _echo_via_public(site, i), range(8)))
        records = [json.loads(server.stdout.readline()) for _ in clients]
    finally:
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=15)
    assert server.returncode == 143, err
    assert _tables(site.balancer) == []
    by_port = {record["client"]: record for record in records}
    served = {own: 0 for own, _ in WORKERS.values()}
    for exact, port, subflows in clients:
        assert exact
        locals_ = by_port[port]["locals"]
        owner = next(own for own, balanced in WORKERS.values() if locals_[0] == balanced)
        assert set(locals_[1:]) == {owner}, locals_
        assert {remote[0] for _, remote in subflows} == {PUBLIC, owner}, subflows
        served[owner] += 1
    assert list(served.values()) == [4, 4]


@pytest.mark.parametrize("arguments, message", [
    (dict(worker_addresses=["198.18.20.2", "198.18.20.7"]),
     "worker address 198.18.20.7 and 198.18.20.2 share 198.18.20.0/24"),
    (dict(worker_addresses=["nowhere"]), "worker address 'nowhere' is not an IP address"),
    (dict(worker_addresses=[]), "no worker address"),
    (dict(public=("0.0.0.0", PORT)),
     "the nftables balancer spreads the connections to one public address"),
    (dict(public=("198.18.21.9", PORT)),
     "the public address 198.18.21.9 is in worker 1's prefix 198.18.21.0/24"),
    (dict(tun="mfa0"), "tun takes a template with %d"),
    (dict(spread="random"), "spread must be one of"),
    (dict(balancer="ipvs"), "balancer must be one of"),
    (dict(public=(PUBLIC, 0)), "the public port must be an int in 1..65535, got 0"),
    (dict(worker_addresses="198.18.20.2"), "worker_addresses is a list of addresses"),
])
def test_serve_workers_refuses_what_cannot_work_before_it_forks(arguments, message):
    """A clear MptcpError, before a worker, device or table is made."""
    async def handler(reader, writer):
        pass
    given = dict(public=(PUBLIC, PORT), worker_addresses=["198.18.20.2", "198.18.21.2"])
    given.update(arguments)
    with pytest.raises(MptcpError, match=message.replace("(", r"\(").replace(")", r"\)")):
        serve_workers(handler, **given)


def test_plan_workers_gives_each_worker_its_own_and_balanced_address():
    plans = plan_workers(["198.18.20.2", "198.18.21.2"])
    assert [(p.number, p.own, p.balanced, p.kernel_side) for p in plans] == [
        (0, "198.18.20.2", "198.18.20.3", "198.18.20.1/24"),
        (1, "198.18.21.2", "198.18.21.3", "198.18.21.1/24")]
