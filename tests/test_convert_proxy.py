"""The two halves of the Convert proxy on the kernel engine, run as a user deploys them, in
two network namespaces this module makes (and deletes):

    curl (SOCKS5, or nothing: nftables redirects it) -> client half (namespace C)
        -> MPTCP over two veth pairs (198.18.0.0/24 and, by a subflow endpoint with a route of
           its own, 198.18.2.0/24) -> server half (namespace S) -> python -m http.server on
           198.18.4.1 / 2001:2:0:4::1 in S (C has no route there), and an HTTPS server on
           198.18.4.1:8443 with a certificate for web.test (TLS end to end through both halves)

Checked: every file byte-exact (SHA-256); the server half's MPTcpExtMPJoinSynRx moving; SOCKS5
with a domain name, an IPv4 and an IPv6 address; username/password accepted and refused; a
refused and an unreachable destination: the Convert Error TLV on the wire and curl's SOCKS5
REP; the transparent front for IPv4 and IPv6, and iperf3 through it both ways; HTTPS with
the web server's certificate checked by curl; the answer's Extended TCP Header TLV against a
capture of the SYN+ACK of a destination of its own (a third namespace, D, behind S, whose
sysctls and MSS differ from S's); with --fastopen, a capture showing the Convert message in
the payload of the client half's second SYN (the first fetched the cookie); Ctrl-C ending a
conversation under way and resetting a connection carried.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time

import pytest

import mptcp_fast
from mptcp_fast.cli import conversion
from mptcp_fast.net import kernel
from mptcp_fast.net.netns import veth_pair
from mptcp_fast.testing.testbed import kernel_namespace, run_name
from mptcp_fast.wire import convert

from certificates import self_signed

pytestmark = [pytest.mark.requires("testbed", "tcpdump", "tshark", "curl", "nftables")]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(mptcp_fast.__file__)))

CLI = [sys.executable, "-m", "mptcp_fast"]
FILE_SIZE = 3 << 20
SMALL_SIZE = 4096
USERS = "alice:s3cret\n"
SERVER, SERVER_TFO, SERVER_ONE = "198.18.0.1:5000", "198.18.0.1:5001", "198.18.0.1:5003"
PORTS = {"socks": 1080, "auth": 1081, "tfo": 1082, "transparent": 1083}
# an HTTPS file server (the web directory, a certificate for web.test), as python -m
# http.server is an HTTP one
HTTPS_SERVER = """
import functools, http.server, ssl, sys
directory, cert, key = sys.argv[1:4]
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=directory)
server = http.server.ThreadingHTTPServer(("198.18.4.1", 8443), handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"""
NFT = """
table ip {table} {{
  chain output {{
    type nat hook output priority -100; policy accept;
    ip daddr 198.18.4.0/24 tcp dport {{ 8000, 5201 }} redirect to :1083
  }}
}}
table ip6 {table}6 {{
  chain output {{
    type nat hook output priority -100; policy accept;
    ip6 daddr 2001:2:0:4::/64 tcp dport 8000 redirect to :1083
  }}
}}
"""
# L's connections, routed through C, diverted to the same transparent front by tproxy (its
# listener is IP_TRANSPARENT): marked, and the mark routes them to C itself (ip rule below)
TPROXY = """
table inet {table} {{
  chain prerouting {{
    type filter hook prerouting priority mangle; policy accept;
    iifname "{lan}" ip daddr 198.18.4.0/24 tcp dport 8000 tproxy ip to :{port} meta mark set 1 accept
    iifname "{lan}" ip6 daddr 2001:2:0:4::/64 tcp dport 8000 tproxy ip6 to :{port} meta mark set 1 accept
  }}
}}
"""


def tproxy_lan(c, tmp, port: int):
    """L, a host of C's LAN whose default route is C: its connections cross C, where tproxy
    diverts those to the web server to the transparent front on ``port`` (no NAT: the
    front's socket has the destination's address as its own, and answers L from it)."""
    lan, dev = kernel_namespace("cvL"), run_name("cvl", "c")
    try:
        veth_pair(lan, run_name("cvl", "l"), c, dev)
        lan.ip("addr", "add", "198.18.30.2/24", "dev", run_name("cvl", "l"))
        c.ip("addr", "add", "198.18.30.1/24", "dev", dev)
        lan.ip("route", "add", "default", "via", "198.18.30.1")
        lan.ip("-6", "addr", "add", "2001:2:0:30::2/64", "dev", run_name("cvl", "l"), "nodad")
        c.ip("-6", "addr", "add", "2001:2:0:30::1/64", "dev", dev, "nodad")
        lan.ip("-6", "route", "add", "default", "via", "2001:2:0:30::1")
        for family in ("-4", "-6"):              # the marked ones are for C itself
            c.ip(family, "rule", "add", "fwmark", "1", "lookup", "111")
            c.ip(family, "route", "add", "local", "default", "dev", "lo", "table", "111")
        c.sysctl("net.ipv4.ip_forward", 1)
        c.sysctl("net.ipv6.conf.all.forwarding", 1)
        path = tmp / "tproxy.nft"
        path.write_text(TPROXY.format(table=run_name("mftp"), lan=dev, port=port))
        c.run("nft", "-f", str(path))
    except BaseException:
        lan.delete()
        raise
    return lan


def _wait_listening(ns, ports, processes, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while True:
        listening = ns.run("ss", "-Hltn")
        if all(f":{port} " in listening for port in ports):
            return
        for process in processes:
            assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < end, f"{ports} not all listening: {listening}"
        time.sleep(0.1)


class Bed:
    """The namespaces, the web server, both halves (plain, with password, with TFO,
    transparent) and what a test needs to run curl in C."""

    def __init__(self, tmp) -> None:
        self.tmp = tmp
        self.c = kernel_namespace("cvC")
        self.s = kernel_namespace("cvS")
        self.lan = None
        self.processes: list[subprocess.Popen] = []
        self.hosts_dir = f"/etc/netns/{self.c.name}"
        c, s = self.c, self.s
        s.sysctl("net.ipv4.tcp_fastopen", 3)          # the server half takes TFO
        c.sysctl("net.ipv4.tcp_fastopen", 1)          # the client half sends it
        for i in (0, 2):
            veth_pair(c, run_name("cvc", str(i)), s, run_name("cvs", str(i)))
            c.ip("addr", "add", f"198.18.{i}.2/24", "dev", run_name("cvc", str(i)))
            s.ip("addr", "add", f"198.18.{i}.1/24", "dev", run_name("cvs", str(i)))
        c.ip("rule", "add", "from", "198.18.2.2", "table", "100")   # the second path's own way
        c.ip("route", "add", "default", "dev", run_name("cvc", "2"), "src", "198.18.2.2",
             "table", "100")
        c.ip("mptcp", "endpoint", "add", "198.18.2.2", "dev", run_name("cvc", "2"), "subflow")
        s.ip("addr", "add", "198.18.4.1/32", "dev", "lo")
        s.ip("-6", "addr", "add", "2001:2:0:4::1/128", "dev", "lo", "nodad")
        s.ip("route", "add", "unreachable", "198.18.6.0/24")
        # C's ways to the web server lead nowhere (a neighbour that does not exist): only the
        # transparent front's redirect gets there
        c.ip("route", "add", "198.18.4.0/24", "via", "198.18.0.99")
        c.ip("-6", "addr", "add", "2001:2::2/64", "dev", run_name("cvc", "0"), "nodad")
        c.ip("-6", "route", "add", "2001:2:0:4::/64", "via", "fe80::99", "dev",
             run_name("cvc", "0"))        # (a global source: ::1 refuses a link-local one)
        os.makedirs(self.hosts_dir, exist_ok=True)   # ip netns exec reads it as C's /etc/hosts
        with open(f"{self.hosts_dir}/hosts", "w") as f:
            f.write("127.0.0.1 localhost\n198.18.4.1 web.test\n")
        web = tmp / "web"
        web.mkdir()
        self.data = os.urandom(FILE_SIZE)
        (web / "file.bin").write_bytes(self.data)
        (web / "small.bin").write_bytes(self.data[:SMALL_SIZE])
        (tmp / "users").write_text(USERS)
        # the halves run this checkout's package, whatever the directory pytest runs in
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
        self._start(s, [sys.executable, "-m", "http.server", "8000", "--bind", "::",
                        "--directory", str(web)])
        self.cert = tmp / "web.pem"
        cert, key = self_signed("web.test")
        self.cert.write_bytes(cert)
        (tmp / "web.key").write_bytes(key)
        self._start(s, [sys.executable, "-c", HTTPS_SERVER, str(web), str(self.cert),
                        str(tmp / "web.key")])
        server = ["proxy", "--engine", "kernel", "--direction", "mptcp-to-tcp", "--convert",
                  "--convert-timeout", "3"]
        self._start(s, CLI + server + ["--listen", SERVER])
        self._start(s, CLI + server + ["--listen", SERVER_TFO, "--fastopen"])
        self._start(s, CLI + server + ["--listen", SERVER_ONE, "--max-conversations", "1"])
        client = ["proxy", "--engine", "kernel", "--convert", "--json"]
        self._start(c, CLI + client + ["--front", "socks5", "--listen",
                                       f"127.0.0.1:{PORTS['socks']}", "--to", SERVER])
        self._start(c, CLI + client + ["--front", "socks5", "--listen",
                                       f"127.0.0.1:{PORTS['auth']}", "--to", SERVER,
                                       "--socks-auth", "password", "--socks-users",
                                       str(tmp / "users")])
        self._start(c, CLI + client + ["--front", "socks5", "--listen",
                                       f"127.0.0.1:{PORTS['tfo']}", "--to", SERVER_TFO,
                                       "--fastopen"])
        self._start(c, CLI + client + ["--front", "transparent", "--listen",
                                       f"[::]:{PORTS['transparent']}", "--to", SERVER])
        c.run("nft", "-f", self._nft_file())
        self.lan = tproxy_lan(c, tmp, PORTS["transparent"])
        _wait_listening(s, [8000, 8443, 5000, 5001, 5003], self.processes)
        _wait_listening(c, list(PORTS.values()), self.processes)

    def _nft_file(self) -> str:
        path = self.tmp / "rules.nft"
        path.write_text(NFT.format(table=run_name("mft")))
        return str(path)

    def _start(self, ns, command) -> None:
        self.processes.append(ns.popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True, env=self.env, cwd=ROOT))

    def curl(self, *arguments, timeout: float = 30.0, ns=None) -> tuple[int, bytes, str]:
        """curl in C (or in ``ns``): (its exit status, what it printed, its errors)."""
        done = subprocess.run(["ip", "netns", "exec", (ns or self.c).name, "curl", "-sS",
                               "--max-time", str(timeout), *arguments],
                              capture_output=True, timeout=timeout + 10)
        return done.returncode, done.stdout, done.stderr.decode(errors="replace")

    def close(self) -> None:
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGINT)
        for process in self.processes:
            try:
                process.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()
        shutil.rmtree(self.hosts_dir, ignore_errors=True)
        if self.lan is not None:
            self.lan.delete()
        self.c.delete()
        self.s.delete()


@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    """(The module's requires marker skips, or in CI fails, every test before this runs.)"""
    made = Bed(tmp_path_factory.mktemp("convert"))
    yield made
    made.close()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_socks5_hostname_carries_a_file_over_two_subflows(bed):
    """curl --socks5-hostname: the client half resolves web.test, the Connect TLV carries
    198.18.4.1, the file comes back byte-exact, and the server half's kernel took a join."""
    before, before_client = bed.s.counters(), bed.c.counters()
    code, body, err = bed.curl("--socks5-hostname", f"127.0.0.1:{PORTS['socks']}",
                               "http://web.test:8000/file.bin")
    assert code == 0, err
    assert len(body) == FILE_SIZE and _sha(body) == _sha(bed.data)
    # without TFO the server half's kernel keeps to the client half's data-level window
    # (with it, Linux 6.18 does not: docs/kernel-behaviour.md §9)
    assert bed.c.counters_since(before_client).get("MPTcpExtNoDSSInWindow", 0) == 0
    moved = bed.s.counters_since(before)
    assert moved.get("MPTcpExtMPCapableSYNRX") == 1
    assert moved.get("MPTcpExtMPJoinSynRx", 0) >= 1 and moved.get("MPTcpExtMPJoinAckRx", 0) >= 1


def test_https_through_both_halves_is_tls_end_to_end(bed):
    """curl --socks5-hostname to https://web.test:8443 checking the server's certificate
    (--cacert): the TLS session runs between curl and the web server, the halves carry its
    bytes over MPTCP, and the file comes back byte-exact."""
    before = bed.s.counters()
    code, body, err = bed.curl("--socks5-hostname", f"127.0.0.1:{PORTS['socks']}",
                               "--cacert", str(bed.cert), "https://web.test:8443/file.bin")
    assert code == 0, err
    assert len(body) == FILE_SIZE and _sha(body) == _sha(bed.data)
    assert bed.s.counters_since(before).get("MPTcpExtMPCapableSYNRX") == 1


@pytest.mark.parametrize("url", ["http://198.18.4.1:8000/file.bin",
                                 "http://[2001:2:0:4::1]:8000/file.bin"])
def test_socks5_with_an_ipv4_or_ipv6_address(bed, url):
    code, body, err = bed.curl("--socks5", f"127.0.0.1:{PORTS['socks']}", url)
    assert code == 0, err
    assert _sha(body) == _sha(bed.data)


@pytest.mark.parametrize("url, rep", [("http://198.18.4.1:8001/", 5),      # nobody listens
                                      ("http://198.18.6.1:80/", 4)])       # no route there
def test_a_refused_or_unreachable_destination_is_the_right_socks_reply(bed, url, rep):
    code, body, err = bed.curl("--socks5", f"127.0.0.1:{PORTS['socks']}", url)
    assert code == 97 and body == b""                 # curl: a SOCKS5 proxy handshake error
    assert f"({rep})" in err, err


def _converse(bed, message: bytes, server=("198.18.0.1", 5000)) -> bytes:
    """``message`` to the server half from an MPTCP socket in C: everything it answers."""
    with bed.c.entered():
        sock = kernel.mptcp_socket()
    with sock:
        sock.settimeout(10)
        sock.connect(server)
        sock.sendall(message)
        answer = b""
        with contextlib.suppress(ConnectionResetError):
            while data := sock.recv(4096):
                answer += data
    return answer


def read_answer(sock) -> convert.Message:
    """One Convert message from ``sock``, read exactly (the bytes after it stay there)."""
    reader = convert.Reader()
    while True:
        data = sock.recv(reader.wanted)
        assert data, "the server half closed before its answer"
        if (message := reader.feed(data)) is not None:
            return message


def assert_connected_answer(answer: convert.Message) -> None:
    """The answer to a Connect TLV once the server half has connected: no Error TLV, one
    Extended TCP Header TLV whose options start with an MSS option."""
    assert [type(tlv) for tlv in answer.tlvs] == [convert.ExtendedTcpHeader], answer
    assert answer.tlvs[0].header[:2] == b"\x02\x04", answer


# a destination of its own, in D behind S (198.18.40.1, S's side 198.18.40.2), whose kernel
# answers SYNs as its sysctls say, with an MSS option of 1300 (its route's advmss) where the
# path's MTU (1280) gives 1240: what the server half's answer says of its SYN+ACK, against a
# capture
SYNACK_DESTINATION = ("198.18.40.1", 9000)
SYNACK_VARIANTS = {
    "defaults": {"net.ipv4.tcp_rmem": "4096 131072 1048576"},     # a shift below S's
    "no-sack-wscale-timestamps": {"net.ipv4.tcp_sack": 0, "net.ipv4.tcp_window_scaling": 0,
                                  "net.ipv4.tcp_timestamps": 0},
}


def _capture_syns(s, interface: str, capture, converse) -> list[tuple[int, list[int], int, int]]:
    """``converse()`` while tcpdump in ``s`` captures on ``interface``: the SYNs and SYN+ACKs
    (their ACK flag, option kinds, MSS option, Window Scale shift or -1)."""
    dump = s.popen(["tcpdump", "-i", interface, "-n", "-U", "--immediate-mode", "-Z", "root",
                    "-w", str(capture), f"tcp port {SYNACK_DESTINATION[1]}"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert "listening on" in dump.stderr.readline()
        converse()
        time.sleep(0.3)
    finally:
        dump.send_signal(signal.SIGINT)
        dump.communicate(timeout=10)
    lines = subprocess.run(["tshark", "-r", str(capture), "-Y", "tcp.flags.syn==1",
                            "-T", "fields", "-e", "tcp.flags.ack", "-e", "tcp.option_kind",
                            "-e", "tcp.options.mss_val", "-e", "tcp.options.wscale.shift"],
                           capture_output=True, text=True, check=True).stdout.splitlines()
    found = []
    for line in lines:
        ack, kinds, mss, shift = line.split("\t")
        found.append((int(ack, 0), [int(k) for k in kinds.split(",") if k], int(mss or 0),
                      int(shift) if shift else -1))
    return found


def check_answer_carries_the_synack_options(bed, server, sysctls: dict, tmp_path) -> None:
    """A Connect TLV to the server half at ``server`` (in ``bed.s``) for a destination in a
    namespace D of its own with ``sysctls``: the answer's Extended TCP Header TLV holds the
    option kinds of the SYN+ACK D sent (capture on S's side), the Timestamps option (8) and
    the NOPs aside, with its MSS option (1300, not the path's 1460) and its Window Scale
    shift (the MSS this socket sends with is the path's, 1240 or 1228: not the option); the
    connection then carries bytes both ways. For either engine's server half."""
    d = kernel_namespace("cvD")
    interface = run_name("cvd", "s")
    try:
        veth_pair(bed.s, interface, d, run_name("cvd", "d"))
        bed.s.ip("link", "set", interface, "mtu", "1280")
        d.ip("link", "set", run_name("cvd", "d"), "mtu", "1280")
        bed.s.ip("addr", "add", "198.18.40.2/24", "dev", interface)
        d.ip("addr", "add", "198.18.40.1/24", "dev", run_name("cvd", "d"))
        d.ip("route", "change", "198.18.40.0/24", "dev", run_name("cvd", "d"), "advmss",
             "1300")
        for key, value in sysctls.items():
            d.sysctl(key, value)
        with d.entered():
            listener = socket.create_server(SYNACK_DESTINATION)
        answers = []

        def converse() -> None:
            with bed.c.entered():
                sock = kernel.mptcp_socket()
            with sock:
                sock.settimeout(10)
                sock.connect(server)
                sock.sendall(convert.encode([convert.Connect(*SYNACK_DESTINATION)]) + b"ping")
                answers.append(read_answer(sock))
                listener.settimeout(10)
                accepted, _ = listener.accept()
                with accepted:
                    accepted.settimeout(10)
                    assert accepted.recv(4) == b"ping"
                    accepted.sendall(b"pong")
                    assert sock.recv(4) == b"pong"

        with listener:
            syns = _capture_syns(bed.s, interface, tmp_path / "synack.pcap", converse)
    finally:
        # the pair goes now: deleting D alone removes it later, in the background, and the
        # next case would find the name still taken in bed.s ("File exists")
        subprocess.run(["ip", "-n", bed.s.name, "link", "del", interface],
                       capture_output=True, check=False)
        d.delete()
    synacks = [syn[1:] for syn in syns if syn[0]]
    assert len(syns) == 2 and len(synacks) == 1, syns
    kinds, mss, shift = synacks[0]
    syn_shift = [syn[3] for syn in syns if not syn[0]][0]      # S's own shift, in its SYN
    (answer,) = answers
    assert_connected_answer(answer)
    options = answer.tlvs[0].header
    assert len(options) % 4 == 0
    assert conversion.option_kinds(options) == [k for k in kinds if k not in (1, 8)]
    assert options[:4] == struct.pack("!BBH", 2, 4, mss) and mss == 1300
    at = options.find(b"\x03\x03")
    assert (options[at + 2] if at >= 0 else -1) == shift
    if sysctls.get("net.ipv4.tcp_sack", 1):              # what D's sysctls let it send
        assert 4 in kinds and 8 in kinds
        assert 0 <= shift != syn_shift            # (D's shift is not S's: the peer's is read)
    else:
        assert kinds == [2] and options == struct.pack("!BBH", 2, 4, 1300)


@pytest.mark.parametrize("variant", list(SYNACK_VARIANTS))
def test_the_answer_carries_the_destinations_synack_options(bed, variant, tmp_path):
    check_answer_carries_the_synack_options(bed, ("198.18.0.1", 5000), SYNACK_VARIANTS[variant],
                                            tmp_path)


@pytest.mark.parametrize("destination, error", [
    (("198.18.4.1", 8001), convert.Error(convert.CONNECTION_RESET)),
    (("198.18.6.1", 80), convert.Error(convert.DESTINATION_UNREACHABLE, b"\x01")),
])
def test_the_server_half_answers_with_an_error_tlv_and_closes(bed, destination, error):
    answer = _converse(bed, convert.encode([convert.Connect(*destination)]))
    assert answer == convert.encode([error])


@pytest.mark.parametrize("destination", [("198.18.0.1", 5000),     # its own listener
                                         ("127.0.0.1", 8000), ("::1", 8000), ("0.0.0.0", 8000)])
def test_the_server_half_does_not_connect_to_itself_or_its_loopback(bed, destination):
    assert _converse(bed, convert.encode([convert.Connect(*destination)])) == \
        convert.encode([convert.Error(convert.NOT_AUTHORIZED)])


def test_the_server_half_answers_a_bad_message_and_a_silent_client(bed):
    assert _converse(bed, b"\x02\x01\x00\x00") == convert.encode(
        [convert.Error(convert.UNSUPPORTED_VERSION, b"\x01")])
    for malformed in ("01022263" "0a000000", "01010000"):    # a TLV of length 0; no magic
        assert _converse(bed, bytes.fromhex(malformed)) == convert.encode(
            [convert.Error(convert.MALFORMED_MESSAGE)])
    assert _converse(bed, convert.encode([convert.Info()])) == convert.encode(
        [convert.SupportedTcpExtensions((30,))])
    started = time.monotonic()                 # half a header, then nothing: --convert-timeout
    assert _converse(bed, b"\x01\x06") == b""
    assert time.monotonic() - started < 9


def test_beyond_max_conversations_the_server_half_answers_resource_exceeded(bed):
    """--max-conversations 1: while one client says nothing, the next is answered Resource
    Exceeded at once; once the first has gone, a Connect is answered again."""
    check_beyond_max_conversations(bed, ("198.18.0.1", 5003))


def check_beyond_max_conversations(bed, server) -> None:
    """The test above against ``server`` (a server half with --max-conversations 1), on
    either engine."""
    with bed.c.entered():
        silent = kernel.mptcp_socket()
    with silent:
        silent.settimeout(10)
        silent.connect(server)
        silent.sendall(b"\x01\x06")                      # half a header, then nothing
        time.sleep(0.5)
        assert _converse(bed, convert.encode([convert.Connect("198.18.4.1", 8000)]), server) \
            == convert.encode([convert.Error(convert.RESOURCE_EXCEEDED)])
    time.sleep(0.5)                                        # (the server half sees it close)
    with bed.c.entered():
        again = kernel.mptcp_socket()
    with again:
        again.settimeout(10)
        again.connect(server)
        again.sendall(convert.encode([convert.Connect("198.18.4.1", 8000)]))
        assert_connected_answer(read_answer(again))


def test_username_and_password(bed):
    url = "http://web.test:8000/small.bin"
    code, body, err = bed.curl("--socks5-hostname", f"alice:s3cret@127.0.0.1:{PORTS['auth']}",
                               url)
    assert code == 0 and body == bed.data[:SMALL_SIZE], err
    code, body, err = bed.curl("--socks5-hostname", f"alice:wrong@127.0.0.1:{PORTS['auth']}",
                               url)
    assert code == 97 and body == b"", err
    code, body, err = bed.curl("--socks5-hostname", f"127.0.0.1:{PORTS['auth']}", url)
    assert code == 97 and body == b"", err


@pytest.mark.parametrize("url", ["http://198.18.4.1:8000/file.bin",
                                 "http://[2001:2:0:4::1]:8000/file.bin"])
def test_the_transparent_front_carries_redirected_connections(bed, url):
    """No proxy named to curl: nftables' redirect sends the connection to the client half,
    which reads the original destination (SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST)."""
    code, body, err = bed.curl(url)
    assert code == 0, err
    assert _sha(body) == _sha(bed.data)


@pytest.mark.parametrize("url", ["http://198.18.4.1:8000/file.bin",
                                 "http://[2001:2:0:4::1]:8000/file.bin"])
def test_the_transparent_front_carries_connections_diverted_by_tproxy(bed, url):
    """From L, a host whose connections are routed through C: nftables' tproxy diverts them
    to the same transparent front without rewriting them (its listener is IP_TRANSPARENT),
    which takes the destination from the connection's own local address, carries the whole
    file, and answers L from the web server's address."""
    before = bed.s.counters()
    code, body, err = bed.curl(url, ns=bed.lan)
    assert code == 0, err
    assert _sha(body) == _sha(bed.data)
    assert bed.s.counters_since(before).get("MPTcpExtMPCapableSYNRX") == 1   # over MPTCP


@pytest.mark.requires("iperf3")
@pytest.mark.parametrize("reverse", [False, True], ids=["upload", "download"])
def test_iperf3_through_the_transparent_front(bed, reverse):
    """iperf3 (its control connection and its test stream, both redirected by nftables to
    the transparent front) to a server in S for a second each way: it completes, the
    receiver counted most of what the sender sent and never more, and the server half took
    joins. (Byte-exactness is curl's part: iperf3 does not check its data.)"""
    import json
    before = bed.s.counters()
    server = bed.s.popen(["iperf3", "-s", "-1", "-B", "198.18.4.1", "-J"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_listening(bed.s, [5201], [server])
        done = subprocess.run(["ip", "netns", "exec", bed.c.name, "iperf3", "-c", "198.18.4.1",
                               "-t", "1", "-J"] + (["-R"] if reverse else []),
                              capture_output=True, text=True, timeout=60)
        server.communicate(timeout=30)
    finally:
        server.kill()
    report = json.loads(done.stdout)
    assert done.returncode == 0 and "error" not in report, done.stdout[-2000:]
    sent, received = report["end"]["sum_sent"]["bytes"], report["end"]["sum_received"]["bytes"]
    # iperf3's receiver stops counting when its second is over, while the two halves' buffers
    # still hold the tail of what was sent (tens of MB): never more than sent, most of it
    assert sent > 16 << 20 and 0.8 * sent <= received <= sent, (sent, received)
    moved = bed.s.counters_since(before)
    assert moved.get("MPTcpExtMPCapableSYNRX") == 2           # control and test connections
    assert moved.get("MPTcpExtMPJoinSynRx", 0) >= 1


def test_a_connection_not_redirected_to_the_transparent_front_is_refused(bed):
    """Straight to the transparent listener: its original destination is the listener itself,
    which it does not carry anywhere (a loop), so it closes the connection at once."""
    with bed.c.entered():
        sock = socket.create_connection(("127.0.0.1", PORTS["transparent"]), timeout=10)
    with sock:
        try:
            assert sock.recv(10) == b""
        except ConnectionResetError:
            pass


def fetch_twice_captured(bed, interface: str, port: int, socks_port: int, capture) -> None:
    """small.bin fetched twice by curl through the SOCKS5 front on ``socks_port``, byte-exact,
    while tcpdump on C's ``interface`` writes the segments of TCP ``port`` to ``capture``."""
    dump = bed.c.popen(["tcpdump", "-i", interface, "-n", "-U", "--immediate-mode",
                        "-Z", "root", "-w", str(capture), f"tcp port {port}"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert "listening on" in dump.stderr.readline()   # (it says so once it captures)
        for _ in range(2):
            code, body, err = bed.curl("--socks5", f"127.0.0.1:{socks_port}",
                                       "http://198.18.4.1:8000/small.bin")
            assert code == 0 and body == bed.data[:SMALL_SIZE], err
        time.sleep(0.5)
    finally:
        dump.send_signal(signal.SIGINT)
        dump.communicate(timeout=10)


def test_with_fastopen_the_convert_message_rides_in_the_second_syn(bed, tmp_path):
    """--fastopen: the first connection to the server half asks for a TFO cookie (a SYN
    without data), the second sends the Convert header and its Connect TLV in the SYN."""
    capture = tmp_path / "tfo.pcap"
    fetch_twice_captured(bed, run_name("cvc", "0"), 5001, PORTS["tfo"], capture)
    syns = subprocess.run(["tshark", "-r", str(capture), "-Y",
                           "tcp.flags.syn==1 && tcp.flags.ack==0", "-T", "fields",
                           "-e", "tcp.len", "-e", "tcp.payload"],
                          capture_output=True, text=True, check=True).stdout.split("\n")
    syns = [line.split("\t") for line in syns if line]
    assert [int(length) for length, _ in syns] == [0, 24], syns
    with_data = subprocess.run(["tshark", "-r", str(capture), "-Y",
                                "tcp.flags.syn==1 && tcp.len>0", "-T", "fields",
                                "-e", "tcp.payload"],
                               capture_output=True, text=True, check=True).stdout.split()
    expected = convert.encode([convert.Connect("198.18.4.1", 8000)])
    assert [bytes.fromhex(p.replace(":", "")) for p in with_data] == [expected]


def test_each_connection_is_reported_with_its_destination(bed):
    """A client half of its own with --count 1: its JSON record names the client, where the
    connection went, the bytes each way and the MPTCP side's two subflows."""
    import json
    proxy = bed.c.popen(CLI + ["proxy", "--engine", "kernel", "--convert", "--json", "--front",
                               "socks5", "--listen", "127.0.0.1:1089", "--to", SERVER,
                               "--count", "1"],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                        env=bed.env, cwd=ROOT)
    try:
        _wait_listening(bed.c, [1089], [proxy])
        code, body, err = bed.curl("--socks5", "127.0.0.1:1089",
                                   "http://198.18.4.1:8000/small.bin")
        assert code == 0 and body == bed.data[:SMALL_SIZE], err
        out, err = proxy.communicate(timeout=30)
    finally:
        proxy.kill()
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["event"] for r in records] == ["listening", "connection"], (out, err)
    report = records[1]
    assert report["destination"] == "198.18.4.1:8000"
    assert report["client"].startswith("127.0.0.1:")
    assert report["downstream"] > SMALL_SIZE and report["upstream"] > 0
    assert len(report["subflows"]) == 2


def test_stopping_ends_the_conversations_under_way_and_the_connections_carried(bed):
    """Ctrl-C on a server half (--convert-timeout 30) with one client silent mid-conversation
    (on its conversation thread) and one carried (on a relay loop, handed over by adopt): the
    proxy ends at once, the silent client's connection ends, the carried one is reset."""
    proxy = bed.s.popen(CLI + ["proxy", "--engine", "kernel", "--direction", "mptcp-to-tcp",
                               "--convert", "--convert-timeout", "30", "--listen",
                               "198.18.0.1:5004"],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                        env=bed.env, cwd=ROOT)
    try:
        _wait_listening(bed.s, [5004], [proxy])
        with bed.c.entered():
            silent, carried = kernel.mptcp_socket(), kernel.mptcp_socket()
        with silent, carried:
            for sock in (silent, carried):
                sock.settimeout(10)
                sock.connect(("198.18.0.1", 5004))
            silent.sendall(b"\x01\x06")                  # half a header, then nothing
            carried.sendall(convert.encode([convert.Connect("198.18.4.1", 8000)]))
            assert_connected_answer(read_answer(carried))
            carried.sendall(b"GET /small.bin HTTP/1.0\r\n")   # (the server waits for more)
            time.sleep(0.3)
            started = time.monotonic()
            proxy.send_signal(signal.SIGINT)
            proxy.communicate(timeout=10)
            assert time.monotonic() - started < 3
            assert silent.recv(16) == b""                # its conversation was ended
            with pytest.raises(ConnectionResetError):    # MP_FASTCLOSE: aborted, not ended
                carried.recv(16)
    finally:
        proxy.kill()
        proxy.communicate()
