"""``proxy --engine userspace --workers N`` (cli/balanced.py): the userspace engine in N
processes behind one public address, every subflow of a connection on the worker that took
it. Kernel MPTCP clients in a namespace of their own (a second subflow endpoint configured)
reach the public address through a balancer namespace:

    namespace C (clients)                    namespace B (the balancer)
      c0: 198.18.0.2/24, 198.18.2.2/24  <->   b0: 198.18.0.1/24, 198.18.2.1/24, forwarding
      default via 198.18.0.1                  nft: SYN to 198.18.10.1:5000 -> DNAT, jhash map

and either the workers' TUN devices in B (one machine: the proxy installs the table), or two
"machines", namespaces M1 and M2 behind B over veths, each with one worker behind its own TUN
device (``--balancer none``; the test installs B's table, the one the proxy would write).
Each worker announces its own address (198.18.2w.2 here, 198.18.4m.2 on the machines) and its
balanced address is the next one (IPv6 too: 2001:2::/48). The TCP side goes to an echo
server on this host's loopback. Root only."""

from __future__ import annotations

import collections
import contextlib
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
import types
from concurrent.futures import ThreadPoolExecutor

import pytest

from mptcp_fast.cli.balanced import TABLE_PREFIX, ruleset
from mptcp_fast.net import kernel
from mptcp_fast.net.netns import veth_pair
from mptcp_fast.testing.testbed import kernel_namespace, run_name
from mptcp_fast.wire import convert
from test_convert_proxy import _converse
from test_netcli import _echo_server

pytestmark = pytest.mark.requires("testbed", "nftables")

CLI = [sys.executable, "-m", "mptcp_fast"]
PUBLIC, PORT = "198.18.10.1", 5000
CLIENT, CLIENT_SECOND = "198.18.0.2", "198.18.2.2"
TCP_ESTABLISHED = 1    # tcpi_state (include/net/tcp_states.h)
TCP_FASTOPEN_CONNECT = 30    # include/uapi/linux/tcp.h


def _json_lines(text: str, event: str) -> list:
    return [record for line in text.splitlines() if line.startswith("{")
            if (record := json.loads(line))["event"] == event]


class _EchoServer:
    """A plain TCP echo server on 127.0.0.1 (the proxies' --to), a thread per connection, on
    a port of the kernel's choosing (``port``)."""

    def __init__(self):
        self.listener = _echo_server(None, "127.0.0.1", 0, mptcp=False)
        self.port = self.listener.getsockname()[1]

    def close(self):
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)       # (wakes the accepting thread)
        self.listener.close()


class Site:
    """Namespaces C and B joined by a veth pair (see the module text); ``close`` deletes
    every namespace made (and with them their devices and nftables tables)."""

    def __init__(self):
        self.spaces = []
        self.clients = self._space("mfw-c")
        self.balancer = self._space("mfw-b")
        c, b = self.clients, self.balancer
        veth_pair(c, "c0", b, "b0")
        for address in (CLIENT, CLIENT_SECOND):
            c.ip("addr", "add", f"{address}/24", "dev", "c0")
            b.ip("addr", "add", f"{address[:-1]}1/24", "dev", "b0")
        c.ip("route", "add", "default", "via", "198.18.0.1")
        b.sysctl("net.ipv4.ip_forward", 1)
        # the second subflow endpoint of RFC 8684 §3.2's client (Linux: a "subflow"
        # endpoint); flag C keeps it from joining the public address
        c.ip("mptcp", "endpoint", "add", CLIENT_SECOND, "dev", "c0", "subflow")

    def _space(self, base: str):
        space = kernel_namespace(base)
        self.spaces.append(space)
        return space

    def machine(self, m: int):
        """Namespace M<m> behind B: veth 198.18.3m.0/24, its worker's prefix 198.18.4m.0/24
        routed there by B; forwarding on (B's packets go on into the worker's TUN device)."""
        space = self._space(f"mfw-m{m}")
        veth_pair(self.balancer, f"bm{m}", space, "e0")
        self.balancer.ip("addr", "add", f"198.18.3{m}.1/24", "dev", f"bm{m}")
        space.ip("addr", "add", f"198.18.3{m}.2/24", "dev", "e0")
        space.ip("route", "add", "default", "via", f"198.18.3{m}.1")
        self.balancer.ip("route", "add", f"198.18.4{m}.0/24", "via", f"198.18.3{m}.2")
        space.sysctl("net.ipv4.ip_forward", 1)
        return space

    def close(self):
        for space in self.spaces:
            space.delete()


@pytest.fixture
def site():
    made = Site()
    yield made
    made.close()


def _echo_via_public(site: Site, i: int, size: int = 16384, public: str = PUBLIC,
                     joined: bool = True, convert_to: int | None = None,
                     fastopen: bool = False, fallback_ok: bool = False):
    """One kernel MPTCP client: connect to the public address, wait (up to 5 s) for the join
    to the announced address (with ``joined`` False: 0.2 s, for a join that will not come up
    to be tried), echo ``size`` bytes. (exact, its initial subflow's local port, its subflows
    as the client's kernel saw them with both up). With ``convert_to`` (a port on this
    host's loopback), the client of a Convert server half: a Connect TLV there first, then
    the echo after the converter's answer (RFC 8803 §3; an Extended TCP Header TLV, §4.2);
    with ``fastopen`` the Connect TLV rides in the SYN once the client's kernel holds a
    cookie (TCP_FASTOPEN_CONNECT). With
    ``fallback_ok``, a connection that fell back to TCP (its kernel then has no subflows to
    tell) has its subflows as None."""
    data = i.to_bytes(4, "big") * (size // 4)
    family = socket.AF_INET6 if ":" in public else socket.AF_INET
    with site.clients.entered():
        sock = socket.socket(family, socket.SOCK_STREAM, 262)
    with sock:
        sock.settimeout(30)
        if fastopen:
            sock.setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN_CONNECT, 1)
        sock.connect((public, PORT))
        if convert_to is not None:
            sock.sendall(convert.encode([convert.Connect("127.0.0.1", convert_to)]))
        end = time.monotonic() + 5
        try:
            while joined and _established(sock) < 2 and time.monotonic() < end:
                time.sleep(0.005)
            if not joined:
                time.sleep(0.2)
            subflows = kernel.subflow_addresses(sock)
        except kernel.KernelMptcpError as exc:
            if not (fallback_ok and exc.errno == errno.EOPNOTSUPP):
                raise
            subflows = None
        port = sock.getsockname()[1]
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        got = bytearray()
        while chunk := sock.recv(1 << 16):
            got += chunk
    if convert_to is None:
        return bytes(got) == data, port, subflows
    reader = convert.Reader()               # the converter's answer, then the echo
    answer = reader.feed(bytes(got))
    exact = answer is not None and reader.rest == data and \
        [type(tlv) for tlv in answer.tlvs] == [convert.ExtendedTcpHeader]
    return exact, port, subflows


def _established(sock) -> int:
    """The subflows of a kernel MPTCP socket that completed their handshake."""
    return sum(1 for info in kernel.subflow_tcp_info(sock) if info.state == TCP_ESTABLISHED)


def _start_proxy(arguments, netns: str, echo_port: int | None, env=None,
                 listen=f"{PUBLIC}:{PORT}"):
    """The proxy to the echo server on ``echo_port``, or without it (None) a Convert server
    half (which connects where each client says)."""
    to = ["--to", f"127.0.0.1:{echo_port}"] if echo_port is not None else []
    return subprocess.Popen(
        CLI + ["proxy", "--engine", "userspace", "--direction", "mptcp-to-tcp", "--netns",
               netns, "--listen", listen, *to, "--json", *arguments],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _first_line(proxy, timeout: float = 30.0) -> str:
    """The proxy's listening line (every worker listening, the balancer in place)."""
    import selectors
    with selectors.DefaultSelector() as sel:
        sel.register(proxy.stdout, selectors.EVENT_READ)
        assert sel.select(timeout), "no listening line"
    line = proxy.stdout.readline()
    assert line, proxy.stderr.read()
    return line


def _lines_until(proxies: dict, records: int, timeout: float = 30.0) -> dict:
    """What each proxy printed until they printed ``records`` connection records between
    them (a record follows its connection's end: an echo the client has is not yet a record),
    as text per proxy."""
    import selectors
    seen = {m: b"" for m in proxies}
    deadline = time.monotonic() + timeout

    def count() -> int:            # (whole lines only: a record may come in two reads)
        return sum(len(_json_lines(text[:text.rfind(b"\n") + 1].decode(), "connection"))
                   for text in seen.values())

    with selectors.DefaultSelector() as sel:
        for m, proxy in proxies.items():   # (the pipes' own descriptors: what the file
            sel.register(proxy.stdout.fileno(), selectors.EVENT_READ, m)   # objects buffer
        while count() < records:                                           # is not seen)
            ready = sel.select(max(0.0, deadline - time.monotonic()))
            assert ready, f"only these records in {timeout} s: {seen}"
            for key, _ in ready:
                chunk = os.read(key.fd, 1 << 16)
                if not chunk:
                    sel.unregister(key.fd)
                seen[key.data] += chunk
    return {m: text.decode() for m, text in seen.items()}


def _tables(space) -> list[str]:
    return [line.split()[-1] for line in space.run("nft", "list", "tables", "inet").splitlines()
            if TABLE_PREFIX in line]


def _check_connections(clients, records, workers: dict[int, tuple[str, str]],
                       public: str = PUBLIC) -> None:
    """Every connection on exactly one worker, seen from both ends: the worker's record
    names the client's port, its subflows all end at that worker's addresses (initial at the
    balanced one, joins at the own one), and the client's kernel joined that worker's own
    address (its initial subflow: the public address)."""
    by_port = {int(r["client"].rsplit(":", 1)[1]): r for r in records}
    assert len(by_port) == len(records) == len(clients)
    for exact, port, subflows in clients:
        assert exact
        record = by_port[port]
        own, balanced = workers[record["worker"]]
        assert record["upstream"] == record["downstream"] == 16384
        locals_ = [local.rsplit(":", 1)[0].strip("[]") for local, _ in record["subflows"]]
        assert locals_[0] == balanced and set(locals_[1:]) == {own}, record
        remotes = {remote[0] for _, remote in subflows}
        assert remotes == {public, own}, (record, subflows)


@pytest.mark.parametrize("backend, spread", [("cython", "hash"), ("python", "round-robin")])
def test_two_workers_keep_every_subflow_of_a_connection(site, backend, spread):
    """proxy --engine userspace --workers 2 (its TUN devices and nftables table in B): 200
    kernel MPTCP connections, eight at a time, each echoing 16 KiB through the proxy to a TCP
    echo server: every echo byte-exact and carried by one worker, which the client joined
    at that worker's announced address and nowhere else (C flag: no join to the public
    address); both workers carry a share; no join refused by either engine (a join that
    reached the worker without its token would be); the clients' kernel counted 200
    ADD_ADDRs and 200 good MP_JOIN SYN/ACKs. One listening line naming the table, removed
    when the count is reached, and no worker left. Both backends, one spread each: a hash
    of the 4-tuple, and round robin (exactly half each)."""
    count = 200
    sink = _EchoServer()
    tun = run_name("mfw", "%d")
    env = {**os.environ, "MPTCP_FAST_PURE": "1" if backend == "python" else "0"}
    before = site.clients.counters()
    proxy = _start_proxy(["--workers", "2", "--worker-address", "198.18.20.2",
                          "--worker-address", "198.18.21.2", "--tun", tun,
                          "--count", str(count), "--spread", spread],
                         site.balancer.name, sink.port, env)
    try:
        listening = json.loads(_first_line(proxy))
        assert _tables(site.balancer) == [listening["table"].split()[-1]]
        with ThreadPoolExecutor(8) as pool:
            clients = list(pool.map(lambda i: _echo_via_public(site, i), range(count)))
        out, err = proxy.communicate(timeout=60)
    finally:
        proxy.kill()
        sink.close()
    assert proxy.returncode == 0 and "Traceback" not in err, err
    assert listening["workers"] == 2 and listening["public"] == PUBLIC
    workers = {0: ("198.18.20.2", "198.18.20.3"), 1: ("198.18.21.2", "198.18.21.3")}
    records = _json_lines(out, "connection")
    _check_connections(clients, records, workers)
    shares = collections.Counter(r["worker"] for r in records)
    assert min(shares[0], shares[1]) >= count // 5, shares
    if spread == "round-robin":
        assert shares[0] == shares[1] == count // 2
    assert listening["spread"] == spread
    closing = {r["worker"]: r for r in _json_lines(out, "worker")}
    assert set(closing) == {0, 1}
    for w, record in closing.items():
        assert (record["own"], record["balanced"]) == workers[w]
        assert record["connections"] == record["joins"] == shares[w]
        assert record["refused_joins"] == record["not_ours"] == 0
    moved = site.clients.counters_since(before)
    assert moved.get("MPTcpExtAddAddr", 0) == count
    assert moved.get("MPTcpExtMPJoinSynAckRx", 0) == count
    assert moved.get("MPTcpExtMPJoinSynAckHMacFailure", 0) == 0
    assert moved.get("MPTcpExtMPCapableFallbackSYNACK", 0) == 0
    assert _tables(site.balancer) == []                  # removed on the way out
    assert tun[:-2] not in site.balancer.ip("link")      # the devices went with the workers


@pytest.mark.parametrize("fastopen, backend", [(False, "cython"), (True, "cython"),
                                               (True, "python")])
def test_the_convert_server_half_in_two_workers(site, fastopen, backend):
    """proxy --convert --workers 2 (the RFC 8803 server half, round robin): a Connect TLV to
    the public address itself answered Not Authorized (a loop); then six kernel MPTCP
    clients one after the other, each a Connect TLV to the echo server and 16 KiB echoed:
    byte-exact after the converter's answer, three connections per worker, every join at the
    owning worker's own address, none refused. With --fastopen (one key drawn by the
    supervisor for both workers): the first client asks for a cookie, which one worker
    gives; every later client sends its Connect TLV in the SYN with that cookie, and the
    other worker, which never gave one, takes it: five SYNs' data taken, one cookie sent in
    all, none refused. Both backends take each other's cookies the same way."""
    count = 6
    sink = _EchoServer()
    env = {**os.environ, "MPTCP_FAST_PURE": "1" if backend == "python" else "0"}
    site.clients.sysctl("net.ipv4.tcp_fastopen", 1)          # the clients' kernel: TFO client
    proxy = _start_proxy(["--convert", "--allow-to", "127.0.0.1/32", "--allow-to",
                          f"{PUBLIC}/32", "--workers", "2",
                          "--worker-address", "198.18.20.2", "--worker-address", "198.18.21.2",
                          "--tun", run_name("mfw", "%d"), "--count", str(count),
                          "--spread", "round-robin", *(["--fastopen"] if fastopen else [])],
                         site.balancer.name, None, env)
    try:
        listening = json.loads(_first_line(proxy))
        # the public address is the server half itself, even where --allow-to allows it: a
        # loop, refused (not a record)
        loop = convert.encode([convert.Connect(PUBLIC, PORT)])
        assert _converse(types.SimpleNamespace(c=site.clients), loop, (PUBLIC, PORT)) == \
            convert.encode([convert.Error(convert.NOT_AUTHORIZED)])
        clients = [_echo_via_public(site, i, convert_to=sink.port, fastopen=fastopen)
                   for i in range(count)]
        out, err = proxy.communicate(timeout=60)
    finally:
        proxy.kill()
        sink.close()
    assert proxy.returncode == 0 and "Traceback" not in err, err
    assert listening["workers"] == 2 and listening["to"] is None
    workers = {0: ("198.18.20.2", "198.18.20.3"), 1: ("198.18.21.2", "198.18.21.3")}
    records = _json_lines(out, "connection")
    _check_connections(clients, records, workers)
    assert {r["destination"] for r in records} == {f"127.0.0.1:{sink.port}"}
    assert collections.Counter(r["worker"] for r in records) == {0: 3, 1: 3}
    closing = {r["worker"]: r for r in _json_lines(out, "worker")}
    assert set(closing) == {0, 1}
    for record in closing.values():
        assert record["connections"] == record["joins"] == 3
        assert record["refused_joins"] == record["not_ours"] == 0
        assert ("fastopen" in record) == fastopen
    if fastopen:
        tfo = {w: record["fastopen"] for w, record in closing.items()}
        assert sum(t["cookies_sent"] for t in tfo.values()) == 1, tfo
        assert sum(t["accepted"] for t in tfo.values()) == count - 1, tfo
        assert all(t["cookies_refused"] == 0 for t in tfo.values()), tfo
        # the worker that gave no cookie took the other's in each of its three SYNs
        assert sorted((t["cookies_sent"], t["accepted"]) for t in tfo.values()) == \
            [(0, 3), (1, 2)], tfo


def test_a_join_by_way_of_the_balancer_is_refused_and_counted(site):
    """The counter the proof rests on, made to move: the client's namespace rewrites its
    joins to the announced addresses into joins to the public address (what a client that
    ignored flag C would send). The balancer then deals each join to a worker like a new
    connection: to the wrong one (which does not know the token) or to the right one's
    balanced address (refused there after flag C, RFC 8684 §3.1); either way refused with a
    reset, counted in the workers' refused joins, and the connections carry on, exact, on
    their initial subflows."""
    subprocess.run(["ip", "netns", "exec", site.clients.name, "nft", "-f", "-"], text=True,
                   check=True, input=(
                       "table ip mfw_ignore_c {\n chain output {\n"
                       "  type nat hook output priority -100; policy accept;\n"
                       f"  ip daddr {{ 198.18.20.2, 198.18.21.2 }} tcp dport {PORT} "
                       f"dnat ip to {PUBLIC}\n }}\n}}\n"))
    sink = _EchoServer()
    before = site.clients.counters()
    proxy = _start_proxy(["--workers", "2", "--worker-address", "198.18.20.2",
                          "--worker-address", "198.18.21.2", "--tun", run_name("mfw", "%d"),
                          "--count", "10"], site.balancer.name, sink.port)
    try:
        _first_line(proxy)
        clients = [_echo_via_public(site, i, joined=False) for i in range(10)]
        time.sleep(0.5)                                  # the last joins' resets
        out, err = proxy.communicate(timeout=60)
    finally:
        proxy.kill()
        sink.close()
    assert proxy.returncode == 0 and all(exact for exact, _, _ in clients), err
    moved = site.clients.counters_since(before)
    tried = moved.get("MPTcpExtMPJoinSynTx", 0)
    assert tried >= 10 and moved.get("MPTcpExtMPJoinSynAckRx", 0) == 0, moved
    assert all(len(r["subflows"]) == 1 for r in _json_lines(out, "connection"))
    closing = _json_lines(out, "worker")
    assert sum(r["refused_joins"] for r in closing) == tried
    assert sum(r["joins"] for r in closing) == 0


def test_serve_in_two_workers(site):
    """serve --mode echo --workers 2 --public ADDR: the same behind the same table, with no
    TCP side: 20 connections, round robin, ten each; each record names its worker, its
    subflows are that worker's (the initial one at the balanced address, the join at the own
    one), the echo is exact, and each worker's closing line counts them."""
    proxy = subprocess.Popen(
        CLI + ["serve", "--mode", "echo", "--netns", site.balancer.name, "--public", PUBLIC,
               "--port", str(PORT), "--workers", "2", "--worker-address", "198.18.20.2",
               "--worker-address", "198.18.21.2", "--tun", run_name("mfw", "%d"),
               "--count", "20", "--spread", "round-robin", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        listening = json.loads(_first_line(proxy))
        with ThreadPoolExecutor(4) as pool:
            clients = list(pool.map(lambda i: _echo_via_public(site, i), range(20)))
        out, err = proxy.communicate(timeout=60)
    finally:
        proxy.kill()
    assert proxy.returncode == 0 and "Traceback" not in err, err
    assert (listening["command"], listening["workers"]) == ("serve", 2)
    assert all(exact for exact, _, _ in clients)
    workers = {0: ("198.18.20.2", "198.18.20.3"), 1: ("198.18.21.2", "198.18.21.3")}
    records = _json_lines(out, "connection")
    assert collections.Counter(r["worker"] for r in records) == {0: 10, 1: 10}
    ports = {port for _, port, _ in clients}
    for record in records:
        own, balanced = workers[record["worker"]]
        assert int(record["connection"].rsplit(":", 1)[1]) in ports
        assert record["sent"] == record["received"] == 16384
        assert record["sent_sha256"] == record["received_sha256"]
        assert [local.rsplit(":", 1)[0] for local, _ in record["subflows"]] == [balanced, own]
    for closing in _json_lines(out, "worker"):
        assert (closing["connections"], closing["joins"], closing["refused_joins"]) == \
            (10, 10, 0)


def test_two_workers_over_ipv6(site):
    """The same over IPv6 (2001:2::/48): an ip6 DNAT map, workers in /64s of their own (own
    ::2, balanced ::3); 20 connections, round robin: ten each, every one joined at its
    worker's own address, none refused."""
    site.clients.ip("-6", "addr", "add", "2001:2::2/64", "dev", "c0", "nodad")
    site.balancer.ip("-6", "addr", "add", "2001:2::1/64", "dev", "b0", "nodad")
    site.clients.ip("-6", "route", "add", "default", "via", "2001:2::1")
    site.balancer.sysctl("net.ipv6.conf.all.forwarding", 1)
    public = "2001:2:0:10::1"
    sink = _EchoServer()
    proxy = _start_proxy(["--workers", "2", "--worker-address", "2001:2:0:20::2",
                          "--worker-address", "2001:2:0:21::2", "--tun", run_name("mfw", "%d"),
                          "--count", "20", "--spread", "round-robin"],
                         site.balancer.name, sink.port, listen=f"[{public}]:{PORT}")
    try:
        _first_line(proxy)
        with ThreadPoolExecutor(4) as pool:
            clients = list(pool.map(lambda i: _echo_via_public(site, i, public=public),
                                    range(20)))
        out, err = proxy.communicate(timeout=60)
    finally:
        proxy.kill()
        sink.close()
    assert proxy.returncode == 0 and "Traceback" not in err, err
    workers = {0: ("2001:2:0:20::2", "2001:2:0:20::3"), 1: ("2001:2:0:21::2", "2001:2:0:21::3")}
    records = _json_lines(out, "connection")
    _check_connections(clients, records, workers, public)
    assert collections.Counter(r["worker"] for r in records) == {0: 10, 1: 10}
    assert all(r["refused_joins"] == 0 for r in _json_lines(out, "worker"))


def test_two_machines_behind_one_balancer(site):
    """The deployment of docs/proxy.md across machines: M1 and M2 each run one worker
    (--workers 1 --balancer none) behind their own TUN device; B is the L4 balancer, with
    the DNAT table the proxy would install (balanced.ruleset) spreading the SYNs to the
    public address over the machines' balanced addresses, and plain routes to their own
    addresses. 60 connections: each on one machine, joined there, exact, both machines
    carrying a share, no join refused."""
    sink = _EchoServer()
    machines = {m: site.machine(m) for m in (1, 2)}
    workers = {m: (f"198.18.4{m}.2", f"198.18.4{m}.3") for m in machines}
    proxies = {m: _start_proxy(["--workers", "1", "--worker-address", workers[m][0],
                                "--balancer", "none", "--tun", run_name("mfw", f"m{m}")],
                               machines[m].name, sink.port)
               for m in machines}
    printed: dict[int, str] = {}
    try:
        for proxy in proxies.values():
            _first_line(proxy)
        subprocess.run(["ip", "netns", "exec", site.balancer.name, "nft", "-f", "-"],
                       input=ruleset("mfw_lb", PUBLIC, PORT, [workers[1][1], workers[2][1]]),
                       text=True, check=True)
        with ThreadPoolExecutor(8) as pool:
            clients = list(pool.map(lambda i: _echo_via_public(site, i), range(60)))
        printed = _lines_until(proxies, len(clients))
    finally:
        outputs = {}
        for m, proxy in proxies.items():
            proxy.send_signal(signal.SIGINT)
            try:
                out, err = proxy.communicate(timeout=30)
                outputs[m] = (printed.get(m, "") + out, err)
            finally:
                proxy.kill()
        sink.close()
    records = []
    for m, (out, err) in outputs.items():
        assert "Traceback" not in err, err
        mine = _json_lines(out, "connection")
        assert mine, f"machine {m} carried nothing"
        for record in mine:
            record["worker"] = m                # (each machine's one worker is its worker 0)
        records += mine
        (closing,) = _json_lines(out, "worker")
        assert closing["refused_joins"] == 0 and closing["joins"] == len(mine)
    _check_connections(clients, records, workers)


@pytest.mark.parametrize("shared", [True, False], ids=["shared-key", "own-keys"])
def test_two_machines_take_each_others_fastopen_cookies_with_one_key(site, tmp_path, shared):
    """The Convert server half with --fastopen on two machines behind B's balancer (round
    robin), --balancer none each: with one --fastopen-key (@FILE) on both, the cookie the
    first machine gave the client is taken by the second: five of six SYNs bring their
    Connect TLV with a cookie that is taken, one cookie handed out in all. Without it (each
    machine its own random key) every later SYN's cookie is the other machine's: refused,
    its data not taken, and a fresh cookie handed out each time; the client's kernel then
    sends the data after the handshake, without a DSS mapping nor MP_CAPABLE in its third
    ACK (Linux 6.18), so such a connection falls back to TCP (RFC 8684 §3.7) and still
    gets its echo."""
    sink = _EchoServer()
    site.clients.sysctl("net.ipv4.tcp_fastopen", 1)
    key = tmp_path / "tfo.key"
    key.write_text(os.urandom(16).hex() + "\n")
    machines = {m: site.machine(m) for m in (1, 2)}
    workers = {m: (f"198.18.4{m}.2", f"198.18.4{m}.3") for m in machines}
    proxies = {m: _start_proxy(["--convert", "--allow-to", "127.0.0.1/32", "--fastopen",
                                *(["--fastopen-key", f"@{key}"] if shared else []),
                                "--workers", "1", "--worker-address", workers[m][0],
                                "--balancer", "none", "--tun", run_name("mfw", f"m{m}"),
                                "--count", "3"],
                               machines[m].name, None)
               for m in machines}
    outputs = {}
    try:
        for proxy in proxies.values():
            _first_line(proxy)
        subprocess.run(["ip", "netns", "exec", site.balancer.name, "nft", "-f", "-"],
                       input=ruleset("mfw_lb", PUBLIC, PORT, [workers[1][1], workers[2][1]],
                                     "round-robin"),
                       text=True, check=True)
        clients = [_echo_via_public(site, i, convert_to=sink.port, fastopen=True,
                                    fallback_ok=not shared) for i in range(6)]
        for m, proxy in proxies.items():
            outputs[m] = proxy.communicate(timeout=30)
    finally:
        for proxy in proxies.values():
            proxy.kill()
        sink.close()
    assert all(exact for exact, _, _ in clients)
    tfo = {}
    for m, (out, err) in outputs.items():
        assert proxies[m].returncode == 0 and "Traceback" not in err, err
        assert len(_json_lines(out, "connection")) == 3
        (closing,) = _json_lines(out, "worker")
        assert closing["refused_joins"] == 0
        if shared:                                  # (a fallen-back connection joins none)
            assert closing["joins"] == 3
        tfo[m] = closing["fastopen"]
    if shared:
        assert sorted((t["cookies_sent"], t["accepted"], t["cookies_refused"])
                      for t in tfo.values()) == [(0, 3, 0), (1, 2, 0)], tfo
    else:
        assert sum(t["accepted"] for t in tfo.values()) == 0, tfo
        assert sum(t["cookies_refused"] for t in tfo.values()) == 5, tfo
        assert sum(t["cookies_sent"] for t in tfo.values()) == 6, tfo


def _children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in found.split()]


@pytest.mark.parametrize("how, status", [("sigint", 130), ("sigterm", 143),
                                         ("a worker fails", 128 + 9)])
def test_the_balancer_table_goes_with_the_proxy(site, how, status):
    """The table is there once the proxy listens (and a table left by a SIGKILLed run, whose
    process is gone, is deleted as it starts), and gone when it ends: on Ctrl-C, on SIGTERM,
    and when a worker dies (SIGKILL: the supervisor ends the other and exits 128 + 9); no
    worker left behind."""
    sink = _EchoServer()
    orphan = f"{TABLE_PREFIX}{_dead_pid()}"
    site.balancer.run("nft", "add", "table", "inet", orphan)
    proxy = _start_proxy(["--workers", "2", "--worker-address", "198.18.20.2",
                          "--worker-address", "198.18.21.2", "--tun", run_name("mfw", "%d")],
                         site.balancer.name, sink.port)
    try:
        listening = json.loads(_first_line(proxy))
        assert _tables(site.balancer) == [listening["table"].split()[-1]]
        workers = _children(proxy.pid)
        assert len(workers) == 2
        if how == "sigint":
            proxy.send_signal(signal.SIGINT)
        elif how == "sigterm":
            proxy.send_signal(signal.SIGTERM)
        else:
            os.kill(workers[1], signal.SIGKILL)
        out, err = proxy.communicate(timeout=30)
    finally:
        proxy.kill()
        sink.close()
    assert proxy.returncode == status, err
    assert "Traceback" not in err
    assert _tables(site.balancer) == []
    for pid in workers:
        assert not os.path.exists(f"/proc/{pid}") or \
            open(f"/proc/{pid}/stat").read().split()[2] == "Z"


def _dead_pid() -> int:
    """A process id no process holds now (that of a child that ended)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid
