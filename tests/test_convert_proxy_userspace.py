"""The Convert proxy's halves on the userspace engine, each against the kernel engine's other
half, run as a user deploys them, in two network namespaces this module makes (and deletes):

    curl (SOCKS5) -> userspace client half (in C; its TUN device in C, the engine's
        198.18.8.2 and 198.18.10.2, which C forwards over the two veth pairs 198.18.0.0/24
        and 198.18.2.0/24) -> kernel server half (S, 198.18.0.1:5000) -> web server
    curl (SOCKS5) -> kernel client half (C, a subflow endpoint on the second veth pair)
        -> userspace server half (in S; its TUN device in S, the engine's 198.18.12.2, which S
        forwards to) -> web server
    curl (SOCKS5) -> userspace client half (C; 198.18.16.2, 198.18.18.2) -> userspace server
        half -> web server
    with --fastopen: curl (SOCKS5) -> userspace client half (C; 198.18.20.2) -> kernel server
        half (S, 198.18.0.1:5001, net.ipv4.tcp_fastopen=3), and curl (SOCKS5) -> kernel
        client half (C) -> userspace server half (S; 198.18.14.2:5003) -> web server

The web server is python -m http.server on 198.18.4.1 / 2001:2:0:4::1 in S (C has no route
there). Checked: a file byte-exact (SHA-256) over two subflows for each pairing, with a domain
name, an IPv4 and an IPv6 address; a refused and an unreachable destination: curl's SOCKS5 REP
and the Error TLV the userspace server half sends, as the kernel half's; its Extended TCP
Header TLV against a capture of the destination's SYN+ACK; its answers to a
loop, a loopback, a bad version, a malformed message, an Info TLV, a silent client and one
beyond --max-conversations; the --json records with their destinations; the transparent
front of the userspace client half; with --fastopen, the Connect TLV in the second SYN both
ways (a capture, and the kernel's TCPFastOpen counters); Ctrl-C ending a userspace server half with a conversation
under way and a connection carried. The userspace halves run on the compiled and on the pure
backend (MPTCP_FAST_PURE=1).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from mptcp_fast import _backend
from mptcp_fast.net import kernel
from mptcp_fast.net.netns import veth_pair
from mptcp_fast.testing.testbed import kernel_namespace, run_name
from mptcp_fast.wire import convert
from test_convert_proxy import (CLI, ROOT, SYNACK_VARIANTS, _sha, _wait_listening,
                                assert_connected_answer, check_answer_carries_the_synack_options,
                                check_beyond_max_conversations, fetch_twice_captured,
                                read_answer, tproxy_lan)
from test_convert_proxy import _converse as _converse_with

pytestmark = [pytest.mark.requires("testbed", "curl", "nftables")]

FILE_SIZE = 24 << 20       # what a transfer needs to last the join's time, on a loaded machine
SMALL_SIZE = 4096
KERNEL_SERVER = "198.18.0.1:5000"        # the kernel server half
KERNEL_TFO_SERVER = ("198.18.0.1", 5001)     # the kernel server half with --fastopen
USERSPACE_TFO_SERVER = ("198.18.14.2", 5003)     # the userspace server half with --fastopen
USERSPACE_SERVER = ("198.18.12.2", 5000)     # the userspace server half (its engine's address)
USERSPACE_ONE = ("198.18.13.2", 5001)        # another, with --max-conversations 1
PORTS = {"userspace": 1090, "kernel": 1091, "transparent": 1092, "both": 1093,
         "userspace-tfo": 1094, "kernel-tfo": 1095}
NFT = """
table ip {table} {{
  chain output {{
    type nat hook output priority -100; policy accept;
    ip daddr 198.18.4.0/24 tcp dport 8000 redirect to :1092
  }}
}}
"""


class _Process:
    """A half as a subprocess, its stdout lines gathered as they come (its --json records)."""

    def __init__(self, ns, command, env) -> None:
        self.popen = ns.popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env, cwd=ROOT)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.popen.stdout),
                                       daemon=True)
        self.reader.start()

    def records(self, event: str = "connection") -> list[dict]:
        return [r for line in list(self.lines) if line.startswith("{")
                if (r := json.loads(line))["event"] == event]


class Bed:
    def __init__(self, tmp, pure: bool) -> None:
        self.tmp = tmp
        self.c = kernel_namespace("cuC")
        self.s = kernel_namespace("cuS")
        self.lan = None
        self.processes: list[_Process] = []
        self.hosts_dir = f"/etc/netns/{self.c.name}"
        c, s = self.c, self.s
        for i in (0, 2):
            veth_pair(c, run_name("cuc", str(i)), s, run_name("cus", str(i)))
            c.ip("addr", "add", f"198.18.{i}.2/24", "dev", run_name("cuc", str(i)))
            s.ip("addr", "add", f"198.18.{i}.1/24", "dev", run_name("cus", str(i)))
        for ns in (c, s):
            ns.sysctl("net.ipv4.ip_forward", 1)     # to and from the engines' TUN devices
        s.sysctl("net.ipv4.tcp_fastopen", 3)        # the kernel server half takes TFO
        # the second path: the kernel client half's subflow endpoint and the userspace client
        # half's second address each take the second veth pair
        c.ip("rule", "add", "from", "198.18.2.2", "table", "100")
        c.ip("route", "add", "default", "via", "198.18.2.1", "dev", run_name("cuc", "2"),
             "table", "100")
        c.ip("rule", "add", "from", "198.18.10.2", "table", "101")
        c.ip("route", "add", "default", "via", "198.18.2.1", "dev", run_name("cuc", "2"),
             "table", "101")
        c.ip("mptcp", "endpoint", "add", "198.18.2.2", "dev", run_name("cuc", "2"), "subflow")
        c.ip("route", "add", "198.18.12.0/23", "via", "198.18.0.1")    # the userspace servers
        c.ip("route", "add", "198.18.14.0/24", "via", "198.18.0.1")
        s.ip("route", "add", "198.18.20.0/24", "via", "198.18.0.2")    # the TFO client half
        s.ip("route", "add", "198.18.8.0/24", "via", "198.18.0.2")       # the userspace client
        s.ip("route", "add", "198.18.10.0/24", "via", "198.18.2.2")
        s.ip("addr", "add", "198.18.4.1/32", "dev", "lo")
        s.ip("-6", "addr", "add", "2001:2:0:4::1/128", "dev", "lo", "nodad")
        s.ip("route", "add", "unreachable", "198.18.6.0/24")
        c.ip("route", "add", "198.18.4.0/24", "via", "198.18.0.99")     # leads nowhere
        os.makedirs(self.hosts_dir, exist_ok=True)   # ip netns exec reads it as C's /etc/hosts
        with open(f"{self.hosts_dir}/hosts", "w") as f:
            f.write("127.0.0.1 localhost\n198.18.4.1 web.test\n")
        web = tmp / "web"
        web.mkdir()
        self.data = os.urandom(FILE_SIZE)
        (web / "file.bin").write_bytes(self.data)
        (web / "small.bin").write_bytes(self.data[:SMALL_SIZE])
        path = [ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
        self.userspace_env = {**self.env, "MPTCP_FAST_PURE": "1" if pure else "0"}
        self._start(s, [sys.executable, "-m", "http.server", "8000", "--bind", "::",
                        "--directory", str(web)])
        self.kernel_server = self._start(s, CLI + [
            "proxy", "--engine", "kernel", "--direction", "mptcp-to-tcp", "--convert",
            "--convert-timeout", "3", "--listen", KERNEL_SERVER])
        userspace_server = ["proxy", "--engine", "userspace", "--direction", "mptcp-to-tcp",
                            "--convert", "--convert-timeout", "3", "--json"]
        self.userspace_server = self._start(s, CLI + userspace_server + [
            "--listen", f"{USERSPACE_SERVER[0]}:{USERSPACE_SERVER[1]}",
            "--tun", run_name("cut", "s"), "--tun-address", "198.18.12.1/24",
            "--address", USERSPACE_SERVER[0]], userspace=True)
        self._start(s, CLI + userspace_server + [
            "--listen", f"{USERSPACE_ONE[0]}:{USERSPACE_ONE[1]}", "--max-conversations", "1",
            "--tun", run_name("cut", "1"), "--tun-address", "198.18.13.1/24",
            "--address", USERSPACE_ONE[0]], userspace=True)
        # --fastopen: each engine's half beside the other's (the kernel's in S and C)
        self._start(s, CLI + [
            "proxy", "--engine", "kernel", "--direction", "mptcp-to-tcp", "--convert",
            "--fastopen", "--listen", f"{KERNEL_TFO_SERVER[0]}:{KERNEL_TFO_SERVER[1]}"])
        self._start(s, CLI + userspace_server + [
            "--fastopen", "--listen", f"{USERSPACE_TFO_SERVER[0]}:{USERSPACE_TFO_SERVER[1]}",
            "--tun", run_name("cut", "f"), "--tun-address", "198.18.14.1/24",
            "--address", USERSPACE_TFO_SERVER[0]], userspace=True)
        self.userspace_tfo_client = self._start(c, CLI + [
            "proxy", "--engine", "userspace", "--front", "socks5", "--convert", "--fastopen",
            "--json", "--listen", f"127.0.0.1:{PORTS['userspace-tfo']}",
            "--to", f"{KERNEL_TFO_SERVER[0]}:{KERNEL_TFO_SERVER[1]}",
            "--tun", run_name("cut", "o"), "--tun-address", "198.18.20.1/24",
            "--address", "198.18.20.2"], userspace=True)
        self._start(c, CLI + [
            "proxy", "--engine", "kernel", "--front", "socks5", "--convert", "--fastopen",
            "--listen", f"127.0.0.1:{PORTS['kernel-tfo']}",
            "--to", f"{USERSPACE_TFO_SERVER[0]}:{USERSPACE_TFO_SERVER[1]}"])
        self.userspace_client = self._start(c, CLI + [
            "proxy", "--engine", "userspace", "--front", "socks5", "--convert", "--json",
            "--listen", f"127.0.0.1:{PORTS['userspace']}", "--to", KERNEL_SERVER,
            "--tun", run_name("cut", "c"), "--tun-address", "198.18.8.1/24",
            "--tun-address", "198.18.10.1/24", "--address", "198.18.8.2",
            "--address", "198.18.10.2"], userspace=True)
        self.both_client = self._start(c, CLI + [              # to the userspace server half
            "proxy", "--engine", "userspace", "--front", "socks5", "--convert", "--json",
            "--listen", f"127.0.0.1:{PORTS['both']}",
            "--to", f"{USERSPACE_SERVER[0]}:{USERSPACE_SERVER[1]}",
            "--tun", run_name("cut", "b"), "--tun-address", "198.18.16.1/24",
            "--tun-address", "198.18.18.1/24", "--address", "198.18.16.2",
            "--address", "198.18.18.2"], userspace=True)
        c.ip("rule", "add", "from", "198.18.18.2", "table", "101")
        s.ip("route", "add", "198.18.16.0/24", "via", "198.18.0.2")
        s.ip("route", "add", "198.18.18.0/24", "via", "198.18.2.2")
        self.kernel_client = self._start(c, CLI + [
            "proxy", "--engine", "kernel", "--front", "socks5", "--convert", "--json",
            "--listen", f"127.0.0.1:{PORTS['kernel']}",
            "--to", f"{USERSPACE_SERVER[0]}:{USERSPACE_SERVER[1]}"])
        self._start(c, CLI + [
            "proxy", "--engine", "userspace", "--front", "transparent", "--convert", "--json",
            "--listen", f"[::]:{PORTS['transparent']}", "--to", KERNEL_SERVER,
            "--tun", run_name("cut", "t"), "--tun-address", "198.18.9.1/24",
            "--address", "198.18.9.2"], userspace=True)
        s.ip("route", "add", "198.18.9.0/24", "via", "198.18.0.2")
        rules = tmp / "rules.nft"
        rules.write_text(NFT.format(table=run_name("mfu")))
        c.run("nft", "-f", str(rules))
        self.lan = tproxy_lan(c, tmp, PORTS["transparent"])
        popens = [p.popen for p in self.processes]
        _wait_listening(s, [8000, 5000, KERNEL_TFO_SERVER[1]], popens)
        _wait_listening(c, list(PORTS.values()), popens)
        # the userspace server halves listen in their engines, not in S's kernel: each says so
        end = time.monotonic() + 30
        while len([p for p in self.processes if p.records("listening")]) < 8:
            for p in popens:
                assert p.poll() is None, p.communicate()[1]
            assert time.monotonic() < end
            time.sleep(0.1)

    def _start(self, ns, command, userspace: bool = False) -> _Process:
        process = _Process(ns, command, self.userspace_env if userspace else self.env)
        self.processes.append(process)
        return process

    def curl(self, *arguments, timeout: float = 60.0, ns=None) -> tuple[int, bytes, str]:
        done = subprocess.run(["ip", "netns", "exec", (ns or self.c).name, "curl", "-sS",
                               "--max-time", str(timeout), *arguments],
                              capture_output=True, timeout=timeout + 10)
        return done.returncode, done.stdout, done.stderr.decode(errors="replace")

    def close(self) -> None:
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                process.popen.send_signal(signal.SIGINT)
        for process in self.processes:
            try:
                process.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.popen.kill()
                process.popen.wait()
        shutil.rmtree(self.hosts_dir, ignore_errors=True)
        if self.lan is not None:
            self.lan.delete()
        self.c.delete()
        self.s.delete()


def _backends():
    yield pytest.param(False, id="compiled", marks=pytest.mark.skipif(
        not _backend.COMPILED_AVAILABLE, reason="compiled backend not built"))
    yield pytest.param(True, id="pure")


@pytest.fixture(scope="module", params=list(_backends()))
def bed(request, tmp_path_factory):
    made = Bed(tmp_path_factory.mktemp("uconvert"), pure=request.param)
    yield made
    made.close()


def _wait_record(process: _Process, destination: str, before: int,
                 timeout: float = 15.0) -> dict:
    """The first connection record after the first ``before`` ones going to ``destination``."""
    end = time.monotonic() + timeout
    while True:
        records = [r for r in process.records()[before:] if r.get("destination") == destination]
        if records:
            return records[0]
        assert time.monotonic() < end, process.lines
        time.sleep(0.1)


@pytest.mark.parametrize("client", ["userspace", "kernel", "both"],
                         ids=["userspace-client-kernel-server", "kernel-client-userspace-server",
                              "userspace-client-userspace-server"])
@pytest.mark.parametrize("option, url", [
    ("--socks5-hostname", "http://web.test:8000/file.bin"),
    ("--socks5", "http://198.18.4.1:8000/file.bin"),
    ("--socks5", "http://[2001:2:0:4::1]:8000/file.bin"),
], ids=["hostname", "ipv4", "ipv6"])
def test_a_file_comes_byte_exact_over_two_subflows(bed, client, option, url):
    """Each engine's half accepts the other's: the file byte-exact, the record of the
    userspace half (its --json) naming the destination and two subflows."""
    userspace = {"userspace": bed.userspace_client, "kernel": bed.userspace_server,
                 "both": bed.both_client}[client]
    before = len(userspace.records())
    kernel_side = bed.s if client == "userspace" else bed.c
    counters = kernel_side.counters()
    # (at 40 MB/s at most the transfer lasts long enough, past what the buffers hold, for
    # the kernel's path manager to join on a loaded machine, and for the record's subflows,
    # sampled every 50 ms while data moves, to see the join: a 3 MiB file took 20-40 ms and
    # sometimes ended before the join)
    code, body, err = bed.curl(option, f"127.0.0.1:{PORTS[client]}", "--limit-rate", "40M",
                               url)
    assert code == 0, err
    assert len(body) == FILE_SIZE and _sha(body) == _sha(bed.data)
    moved = kernel_side.counters_since(counters)
    if client == "userspace":           # the kernel server half took the engine's join
        assert moved.get("MPTcpExtMPJoinSynRx", 0) >= 1, moved
    elif client == "kernel":            # the engine took the kernel client half's join
        assert moved.get("MPTcpExtMPJoinSynAckRx", 0) >= 1, moved
    # (the client half names the destination as its client did, the server half as the
    # Connect TLV does: an address)
    destination = "[2001:2:0:4::1]:8000" if "2001" in url else \
        "web.test:8000" if "web.test" in url and client != "kernel" else "198.18.4.1:8000"
    record = _wait_record(userspace, destination, before)
    assert record["engine"] == "userspace"
    assert len(record["subflows"]) == 2, record
    assert record["downstream"] > FILE_SIZE and record["upstream"] > 0   # (toward the client)
    if client != "kernel":
        assert record["client"].startswith("127.0.0.1:")
    else:
        assert {local.split(":")[0] for local, _ in record["subflows"]} == {"198.18.12.2"}
        assert {remote.rsplit(":", 1)[0] for _, remote in record["subflows"]} == \
            {"198.18.0.2", "198.18.2.2"}


@pytest.mark.parametrize("client", ["userspace", "kernel", "both"])
@pytest.mark.parametrize("url, rep", [("http://198.18.4.1:8001/", 5),      # nobody listens
                                      ("http://198.18.6.1:80/", 4),        # no route there
                                      ("http://127.0.0.1:8000/", 2)])      # S's loopback
def test_a_refused_destination_is_the_right_socks_reply(bed, client, url, rep):
    code, body, err = bed.curl("--socks5", f"127.0.0.1:{PORTS[client]}", url)
    assert code == 97 and body == b""                 # curl: a SOCKS5 proxy handshake error
    assert f"({rep})" in err, err


def _converse(bed, message: bytes, server=USERSPACE_SERVER) -> bytes:
    """``message`` to a userspace server half from a kernel MPTCP socket in C: all it says."""
    return _converse_with(bed, message, server)


@pytest.mark.parametrize("destination, error", [
    (("198.18.4.1", 8001), convert.Error(convert.CONNECTION_RESET)),
    (("198.18.6.1", 80), convert.Error(convert.DESTINATION_UNREACHABLE, b"\x01")),
    (USERSPACE_SERVER, convert.Error(convert.NOT_AUTHORIZED)),            # itself: a loop
    (("127.0.0.1", 8000), convert.Error(convert.NOT_AUTHORIZED)),
    (("::1", 8000), convert.Error(convert.NOT_AUTHORIZED)),
    (("0.0.0.0", 8000), convert.Error(convert.NOT_AUTHORIZED)),
])
def test_the_userspace_server_half_answers_with_the_kernel_halfs_error_tlv(bed, destination,
                                                                           error):
    assert _converse(bed, convert.encode([convert.Connect(*destination)])) == \
        convert.encode([error])


@pytest.mark.requires("tcpdump", "tshark")
@pytest.mark.parametrize("variant", list(SYNACK_VARIANTS))
def test_the_userspace_server_halfs_answer_carries_the_destinations_synack_options(
        bed, variant, tmp_path):
    """The userspace server half's connection to the destination is a kernel TCP socket
    (asyncio's): its answer says what that socket saw of the SYN+ACK, as the kernel half's
    (the check and its capture: test_convert_proxy)."""
    check_answer_carries_the_synack_options(bed, USERSPACE_SERVER, SYNACK_VARIANTS[variant],
                                            tmp_path)


def test_the_userspace_server_half_answers_a_bad_message_and_a_silent_client(bed):
    assert _converse(bed, b"\x02\x01\x00\x00") == convert.encode(
        [convert.Error(convert.UNSUPPORTED_VERSION, b"\x01")])
    for malformed in ("01022263" "0a000000", "01010000"):    # a TLV of length 0; no magic
        assert _converse(bed, bytes.fromhex(malformed)) == convert.encode(
            [convert.Error(convert.MALFORMED_MESSAGE)])
    assert _converse(bed, convert.encode([convert.Info()])) == convert.encode(
        [convert.SupportedTcpExtensions((30,))])
    assert _converse(bed, convert.encode([convert.Connect("198.18.4.1", 8000,
                                                          b"\x02\x04\x05\xb4")])) == \
        convert.encode([convert.Error(convert.UNSUPPORTED_TCP_OPTION, b"\x02")])
    started = time.monotonic()                 # half a header, then nothing: --convert-timeout
    assert _converse(bed, b"\x01\x06") == b""
    assert time.monotonic() - started < 9
    assert bed.userspace_server.popen.poll() is None


def test_beyond_max_conversations_the_userspace_server_half_answers_resource_exceeded(bed):
    check_beyond_max_conversations(bed, USERSPACE_ONE)


def test_the_userspace_transparent_front_carries_a_redirected_connection(bed):
    code, body, err = bed.curl("http://198.18.4.1:8000/file.bin")
    assert code == 0, err
    assert _sha(body) == _sha(bed.data)


@pytest.mark.parametrize("url", ["http://198.18.4.1:8000/file.bin",
                                 "http://[2001:2:0:4::1]:8000/file.bin"])
def test_the_userspace_transparent_front_carries_a_connection_diverted_by_tproxy(bed, url):
    """From L, through C: tproxy (test_convert_proxy.tproxy_lan) diverts the connection to the
    userspace engine's transparent front, which finds the destination in its own address."""
    code, body, err = bed.curl(url, ns=bed.lan)
    assert code == 0, err
    assert _sha(body) == _sha(bed.data)


@pytest.mark.requires("tcpdump", "tshark")
@pytest.mark.parametrize("client, port, counter", [
    ("userspace-tfo", KERNEL_TFO_SERVER[1], "TcpExtTCPFastOpenPassive"),
    ("kernel-tfo", USERSPACE_TFO_SERVER[1], "TcpExtTCPFastOpenActive"),
], ids=["userspace-client-kernel-server", "kernel-client-userspace-server"])
def test_with_fastopen_the_connect_tlv_rides_in_the_second_syn(bed, tmp_path, client, port,
                                                                counter):
    """--fastopen, each engine's half against the other's: the first connection asks for a
    TFO cookie (a SYN without data), the second sends the Convert header and its Connect TLV
    in the SYN (a capture on C's first veth), which the other half takes (the kernel's
    counter on its side: the kernel server's passive open, the kernel client's active one);
    the file byte-exact both times."""
    capture = tmp_path / f"{client}.pcap"
    kernel_side = bed.s if client == "userspace-tfo" else bed.c
    before = kernel_side.counters("TcpExtTCPFastOpen")
    fetch_twice_captured(bed, run_name("cuc", "0"), port, PORTS[client], capture)
    syns = subprocess.run(["tshark", "-r", str(capture), "-Y",
                           "tcp.flags.syn==1 && tcp.flags.ack==0 && tcp.option_kind==34",
                           "-T", "fields", "-e", "tcp.len", "-e", "tcp.payload"],
                          capture_output=True, text=True, check=True).stdout.split("\n")
    syns = [line.split("\t") for line in syns if line]
    expected = convert.encode([convert.Connect("198.18.4.1", 8000)])
    assert [int(length) for length, _ in syns] == [0, len(expected)], syns
    assert bytes.fromhex(syns[1][1].replace(":", "")) == expected
    moved = kernel_side.counters_since(before, "TcpExtTCPFastOpen")
    assert moved.get(counter) == 1, moved


def test_stopping_the_userspace_server_half_ends_what_is_under_way(bed):
    """Ctrl-C on a userspace server half (--convert-timeout 30) with one client silent
    mid-conversation and one carried: it ends at once, both clients' connections end, the
    carried one reset (MP_FASTCLOSE)."""
    server = ("198.18.13.130", 5002)     # (a /25 of its own beside the other devices' /24)
    proxy = _Process(bed.s, CLI + [
        "proxy", "--engine", "userspace", "--direction", "mptcp-to-tcp", "--convert",
        "--convert-timeout", "30", "--json", "--listen", f"{server[0]}:{server[1]}",
        "--tun", run_name("cut", "x"), "--tun-address", "198.18.13.129/25",
        "--address", server[0]], bed.userspace_env)
    try:
        end = time.monotonic() + 30
        while not proxy.records("listening"):
            assert proxy.popen.poll() is None and time.monotonic() < end, \
                proxy.popen.communicate()[1]
            time.sleep(0.1)
        with bed.c.entered():
            silent, carried = kernel.mptcp_socket(), kernel.mptcp_socket()
        with silent, carried:
            for sock in (silent, carried):
                sock.settimeout(10)
                sock.connect(server)
            silent.sendall(b"\x01\x06")                  # half a header, then nothing
            carried.sendall(convert.encode([convert.Connect("198.18.4.1", 8000)]))
            assert_connected_answer(read_answer(carried))
            carried.sendall(b"GET /small.bin HTTP/1.0\r\n")   # (the server waits for more)
            time.sleep(0.3)
            started = time.monotonic()
            proxy.popen.send_signal(signal.SIGINT)
            assert proxy.popen.wait(10) == 130
            assert time.monotonic() - started < 3
            with contextlib.suppress(ConnectionResetError):   # (its task cancelled: a reset)
                assert silent.recv(16) == b""
            with pytest.raises(ConnectionResetError):    # MP_FASTCLOSE: aborted, not ended
                carried.recv(16)
    finally:
        proxy.popen.kill()
        proxy.popen.wait()
