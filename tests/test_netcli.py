"""``mptcp-fast serve``, ``connect`` and ``proxy``, run as a user runs them: the
userspace engine on a TUN device and the kernel's MPTCP sockets, each against the other, and
the proxy on both engines carrying a plain TCP client to a kernel MPTCP server. Root only,
except the error messages."""

from __future__ import annotations

import collections
import contextlib
import errno
import hashlib
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time

import pytest

from mptcp_fast.cli.net import system_backlog
from mptcp_fast.testing.testbed import KernelPeer, kernel_namespace, run_name

root_only = pytest.mark.requires("testbed")
CLI = [sys.executable, "-m", "mptcp_fast"]
TUN = ["--tun-address", "198.18.0.1/24", "--tun-address", "198.18.2.1/24"]
# the TUN devices' names, with this run's tag (testbed.run_name): two runs at once on one
# machine do not take each other's devices
MFN0, MFN1, MFN2, MFN3 = (run_name("mfn", str(i)) for i in range(4))
MFP0, MFP1 = run_name("mfp", "0"), run_name("mfp", "1")


@pytest.fixture
def ns():
    made = kernel_namespace("mfn-k")
    yield made
    made.delete()


def _start(arguments, **kwargs):
    return subprocess.Popen(CLI + arguments, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kwargs)


def _wait_listening(ns, port: int, timeout: float = 10.0) -> None:
    """Until something listens on ``port`` in ``ns`` (ss), so the client does not race it."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if f":{port} " in ns.run("ss", "-Hltn"):
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


def _wait_established(ns, port: int, count: int, timeout: float = 30.0) -> None:
    """Until ``ns`` holds ``count`` established TCP sockets on local ``port`` (ss; an MPTCP
    connection's subflows are TCP sockets there), however loaded the machine is."""
    end = time.monotonic() + timeout
    while True:
        held = len(ns.run("ss", "-Htn", "state", "established", f"( sport = :{port} )")
                   .splitlines())
        if held >= count:
            return
        assert time.monotonic() < end, f"{held} of {count} connections up after {timeout} s"
        time.sleep(0.05)


def _wait_proxy_listening(proxy, port: int, timeout: float = 10.0) -> None:
    """Until the proxy (a subprocess, in this namespace) listens on ``port``; fails at once
    with its error output if it ended."""
    end = time.monotonic() + timeout
    while f":{port} ".encode() not in subprocess.run(["ss", "-Hltn"],
                                                       capture_output=True).stdout:
        assert time.monotonic() < end and proxy.poll() is None, proxy.stderr.read()
        time.sleep(0.05)


def _json_lines(text: str, event: str = "connection") -> list:
    """The JSON records of ``event`` ("connection": one per finished connection; "listening":
    the start-up record) a --json run printed."""
    return [record for line in text.splitlines() if line.startswith("{")
            if (record := json.loads(line))["event"] == event]


def _serve_and_connect(server_arguments, client_arguments, when_ready):
    """Start ``serve`` (one connection), call ``when_ready()``, run ``connect``; return the
    (client report, server report) of that connection."""
    server = _start(server_arguments)
    try:
        when_ready()
        client = subprocess.run(CLI + client_arguments, capture_output=True, text=True,
                                timeout=60)
        out, err = server.communicate(timeout=30)
    finally:
        server.kill()
    assert client.returncode == 0, client.stderr
    assert server.returncode == 0, err
    (c,) = _json_lines(client.stdout)
    (s,) = _json_lines(out)
    return c, s


@root_only
def test_userspace_echo_server_and_kernel_client(ns):
    """serve --mode echo on the engine (its TUN device moved into the namespace); connect
    --engine kernel from the namespace, which also joins from its second address."""
    def device_up():
        end = time.monotonic() + 10
        while MFN0 not in ns.ip("link") and time.monotonic() < end:
            time.sleep(0.05)
        ns.ip("mptcp", "endpoint", "add", "198.18.2.1", "dev", MFN0, "subflow")
    c, s = _serve_and_connect(
        ["serve", "--mode", "echo", "--count", "1", "--json", "--tun", MFN0, *TUN,
         "--netns", ns.name, "--address", "198.18.0.2"],
        ["connect", "198.18.0.2", "5000", "--engine", "kernel", "--netns", ns.name,
         "--bytes", "20M", "--json"], device_up)
    assert c["sent"] == c["received"] == 20 << 20
    assert c["received_sha256"] == c["sent_sha256"] == s["received_sha256"] == s["sent_sha256"]
    assert s["engine"] == "userspace" and c["engine"] == "kernel"
    assert len(s["subflows"]) == 2 and len(c["subflows"]) == 2


@root_only
def test_userspace_client_and_kernel_server(ns):
    """connect on the engine from two addresses to serve --engine kernel --mode send: 30 MB
    each way; the SHA-256 of what the server sent is what the client received."""
    c, s = _serve_and_connect(
        ["serve", "--engine", "kernel", "--netns", ns.name, "--mode", "send", "--bytes", "30M",
         "--count", "1", "--json"],
        ["connect", "198.18.0.1", "5000", "--tun", MFN1, *TUN, "--netns", ns.name,
         "--address", "198.18.0.2", "--address", "198.18.2.2", "--bytes", "30M", "--json"],
        lambda: _wait_listening(ns, 5000))
    assert c["received"] == s["sent"] == 30 << 20 and c["sent"] == s["received"] == 30 << 20
    assert c["received_sha256"] == s["sent_sha256"] and s["received_sha256"] == c["sent_sha256"]
    assert len(c["subflows"]) == 2


@root_only
def test_a_persistent_device_is_taken_over_as_it_was(ns):
    """TunDevice(persist=True) in a namespace outlives its descriptor with its interface index,
    addresses and routes; the next one of that name takes it over (configuring it again is no
    error); remove() deletes it."""
    from mptcp_fast.net.netns import NamespaceError
    from mptcp_fast.net.tun import TunDevice
    first = TunDevice(MFP0, persist=True, netns=ns.name)
    try:
        assert first.reused is False
        first.configure(["198.18.0.1/24"], ["198.18.5.0/24"], netns=ns.name)
        index = json.loads(ns.ip("-j", "link", "show", MFP0))[0]["ifindex"]
        first.close()                                   # still there (no carrier), same index
        assert json.loads(ns.ip("-j", "link", "show", MFP0))[0]["ifindex"] == index
        second = TunDevice(MFP0, persist=True, netns=ns.name)
        assert second.reused is True
        second.configure(["198.18.0.1/24"], ["198.18.5.0/24"], netns=ns.name)
        assert json.loads(ns.ip("-j", "link", "show", MFP0))[0]["ifindex"] == index
        assert f"198.18.5.0/24 dev {MFP0}" in ns.ip("route")
        second.close()
    finally:
        TunDevice.remove(MFP0, ns.name)
    with pytest.raises(NamespaceError):                     # gone
        ns.ip("link", "show", MFP0)
    with pytest.raises(ValueError, match="fixed name"):
        TunDevice("mfp%d", persist=True)


def _echo_run(ns, *extra) -> tuple[dict, str]:
    """serve --mode echo on the engine (device MFP1 in the namespace) and a kernel client in
    the namespace that joins from its endpoint on MFP1: the client's record and what serve
    wrote to stderr."""
    server = _start(["serve", "--mode", "echo", "--count", "1", "--json", "--tun", MFP1,
                     *TUN, "--netns", ns.name, "--address", "198.18.0.2", *extra])
    try:
        line = server.stdout.readline()
        assert line, _stderr_of(server)
        assert json.loads(line)["event"] == "listening"
        if "198.18.2.1" not in ns.ip("mptcp", "endpoint", "show"):
            ns.ip("mptcp", "endpoint", "add", "198.18.2.1", "dev", MFP1, "subflow")
        client = subprocess.run(CLI + ["connect", "198.18.0.2", "5000", "--engine", "kernel",
                                       "--netns", ns.name, "--bytes", "20M", "--json"],
                                capture_output=True, text=True, timeout=60)
        _, err = server.communicate(timeout=30)
    finally:
        server.kill()
    assert client.returncode == 0 and server.returncode == 0, (client.stderr, err)
    (record,) = _json_lines(client.stdout)
    assert record["received"] == record["sent"] == 20 << 20
    return record, err


@root_only
def test_a_persistent_device_keeps_the_kernels_endpoints_joining(ns):
    """The kernel's endpoint bound to the engine's device follows its interface index: with
    --persist-tun a second serve takes the same device over and the kernel client joins
    again (two subflows both times); without it serve warns, as it ends, that the endpoint
    dies with the device."""
    from mptcp_fast.net.tun import TunDevice
    try:
        for _ in range(2):
            record, err = _echo_run(ns, "--persist-tun")
            assert len(record["subflows"]) == 2 and err == ""
        TunDevice.remove(MFP1, ns.name)       # (the endpoint stays, bound to a dead index)
        ns.ip("mptcp", "endpoint", "flush")
        record, err = _echo_run(ns)
        assert len(record["subflows"]) == 2
        assert err.startswith("mptcp-fast serve: warning: the kernel's MPTCP endpoint(s) "
                              f"198.18.2.1 on {MFP1} stop working"), err
    finally:
        with contextlib.suppress(Exception):
            TunDevice.remove(MFP1, ns.name)


@root_only
def test_a_download_alone_with_bytes_0(ns):
    """connect --bytes 0 against serve --mode send: nothing sent, 8 MB received, the
    SHA-256 the server reports for what it sent (both on the kernel's MPTCP, in the
    namespace)."""
    ns.ip("addr", "add", "198.18.0.1/24", "dev", "lo")
    c, s = _serve_and_connect(
        ["serve", "--engine", "kernel", "--netns", ns.name, "--mode", "send", "--bytes", "8M",
         "--count", "1", "--json"],
        ["connect", "198.18.0.1", "5000", "--engine", "kernel", "--netns", ns.name,
         "--bytes", "0", "--json"],
        lambda: _wait_listening(ns, 5000))
    assert c["sent"] == s["received"] == 0 and c["received"] == s["sent"] == 8 << 20
    assert c["received_sha256"] == s["sent_sha256"]
    assert c["sent_sha256"] == hashlib.sha256(b"").hexdigest()


@root_only
def test_the_proxy_prints_a_line_per_connection(ns):
    """Without --json: the start-up line, then one line per finished connection naming the
    client, the bytes each way, the subflows and the duration."""
    ns.ip("addr", "add", "198.18.0.1/24", "dev", "lo")
    server = KernelPeer(ns, send_bytes=3 << 20, seed=11).listen("0.0.0.0", 5000)
    proxy = _start(["proxy", "--engine", "kernel", "--netns", ns.name, "--listen",
                    "127.0.0.1:7101", "--to", "198.18.0.1:5000", "--count", "1"])
    try:
        _wait_proxy_listening(proxy, 7101)
        client = KernelPeer(None, send_bytes=1 << 20, seed=12, mptcp=False)
        client.connect("127.0.0.1", 7101)
        client.join(60)
        server.join(30)
        out, err = proxy.communicate(timeout=30)
    finally:
        proxy.kill()
    assert err == "" and client.received == 3 << 20
    banner, line = out.splitlines()
    assert banner == "proxy (tcp-to-mptcp, kernel): 127.0.0.1:7101 -> 198.18.0.1:5000"
    assert re.fullmatch(r"127\.0\.0\.1:\d+: 1,048,576 B up, 3,145,728 B down, 1 subflow\(s\), "
                        r"\d+\.\d\d s", line), line


def test_a_missing_file_to_send_is_named_before_connecting(tmp_path):
    """connect --send-file with no such file: one line naming it, exit status 2, and nothing
    opened (no engine, no TUN device: this runs without root)."""
    missing = tmp_path / "nothing.bin"
    done = subprocess.run([*CLI, "connect", "198.18.0.1", "5000", "--send-file", str(missing)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr == f"mptcp-fast connect: No such file or directory: {missing}\n"


@root_only
@pytest.mark.parametrize("engine", ["userspace", "kernel"])
def test_proxy_carries_plain_tcp_to_a_kernel_mptcp_server(ns, engine):
    """A plain TCP client -> proxy (tcp-to-mptcp) -> a kernel MPTCP server, 20 MB each way
    byte-exact, and the kernel's counters show the MPTCP connection and the second subflow."""
    if engine == "kernel":                     # the proxy's MPTCP socket lives in the namespace
        ns.ip("addr", "add", "198.18.0.1/24", "dev", "lo")
        ns.ip("addr", "add", "198.18.2.1/24", "dev", "lo")
        ns.ip("mptcp", "endpoint", "add", "198.18.2.1", "dev", "lo", "subflow")
        extra = ["--netns", ns.name]
    else:
        extra = ["--tun", MFN2, *TUN, "--netns", ns.name, "--address", "198.18.0.2",
                 "--address", "198.18.2.2"]
    server = KernelPeer(ns, send_bytes=20 << 20, seed=11).listen("0.0.0.0", 5000)
    before = ns.counters()
    proxy = _start(["proxy", "--engine", engine, "--listen", "127.0.0.1:7100",
                    "--to", "198.18.0.1:5000", "--count", "1", "--json", *extra])
    try:
        _wait_proxy_listening(proxy, 7100)
        client = KernelPeer(None, send_bytes=20 << 20, seed=12, mptcp=False)
        client.connect("127.0.0.1", 7100)
        client.join(60)
        server.join(30)
        out, err = proxy.communicate(timeout=30)
    finally:
        proxy.kill()
    assert client.error is None and server.error is None
    assert client.received == server.received == 20 << 20
    assert client.received_sha256 == server.sent_sha256
    assert server.received_sha256 == client.sent_sha256
    (started,) = _json_lines(out, "listening")
    assert started == {"event": "listening", "command": "proxy", "listen": "127.0.0.1:7100",
                       "to": "198.18.0.1:5000", "direction": "tcp-to-mptcp", "engine": engine}
    (report,) = _json_lines(out)
    assert report["upstream"] == report["downstream"] == 20 << 20
    assert len(report["subflows"]) == 2
    assert report["client"].startswith("127.0.0.1:") and 0 < report["seconds"] < 90
    moved = ns.counters_since(before)
    assert moved.get("MPTcpExtMPCapableSYNRX") == 1 and moved.get("MPTcpExtMPJoinSynRx") == 1
    assert moved.get("MPTcpExtMPJoinAckRx") == 1


@root_only
@pytest.mark.parametrize("relay", ["splice", "copy"])
def test_the_kernel_proxy_carries_mptcp_to_plain_tcp(ns, relay):
    """proxy --engine kernel --direction mptcp-to-tcp, its threads splicing (or copying with
    MPTCP_FAST_RELAY=copy): a kernel MPTCP client with two subflows -> the proxy's MPTCP
    listener in the namespace -> a plain TCP server here. The client ends its side first and
    the server still sends for a while (a half-close carried, the other way going on): every
    byte exact both ways, and the record counts them and the client's two subflows."""
    ns.ip("addr", "add", "198.18.0.1/24", "dev", "lo")
    ns.ip("addr", "add", "198.18.2.1/24", "dev", "lo")
    ns.ip("mptcp", "endpoint", "add", "198.18.2.1", "dev", "lo", "subflow")
    server = KernelPeer(None, send_bytes=24 << 20, seed=21, mptcp=False).listen("127.0.0.1",
                                                                                7131)
    proxy = _start(["proxy", "--engine", "kernel", "--direction", "mptcp-to-tcp", "--netns",
                    ns.name, "--listen", "198.18.0.1:5000", "--to", "127.0.0.1:7131",
                    "--count", "1", "--json"], env={**os.environ, "MPTCP_FAST_RELAY": relay})
    try:
        _wait_listening(ns, 5000)
        # (its second subflow established before it sends: Linux 6.18, the receiver here,
        # can misplace a join's first data otherwise: docs/kernel-behaviour.md §8)
        client = KernelPeer(ns, send_bytes=3 << 20, seed=22, hold=0.2, subflows=2,
                            joined_first=True)
        client.connect("198.18.0.1", 5000)
        client.join(60)
        server.join(30)
        out, err = proxy.communicate(timeout=30)
    finally:
        proxy.kill()
    assert client.error is None and server.error is None, (client.error, server.error)
    assert (client.received, server.received) == (24 << 20, 3 << 20)
    assert client.received_sha256 == server.sent_sha256
    assert server.received_sha256 == client.sent_sha256
    assert err == ""
    (report,) = _json_lines(out)
    assert (report["upstream"], report["downstream"]) == (3 << 20, 24 << 20)
    assert report["engine"] == "kernel" and len(report["subflows"]) == 2


def _echo_server(ns, address: str, port: int, mptcp: bool = True):
    """A kernel MPTCP echo server in ``ns`` (plain TCP with ``mptcp=False``; here when ``ns``
    is None), a thread per connection; returns its listener (closing it ends the server)."""
    import threading
    with ns.entered() if ns is not None else contextlib.nullcontext():
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262 if mptcp else 0)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((address, port))
    listener.listen(256)

    def echo(sock):
        with sock:
            while data := sock.recv(1 << 16):
                sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)

    def serve():
        with contextlib.suppress(OSError):
            while True:
                threading.Thread(target=echo, args=(listener.accept()[0],), daemon=True).start()
    threading.Thread(target=serve, daemon=True).start()
    return listener


def _echo_through(port: int, data: bytes) -> bytes:
    """Send ``data`` to 127.0.0.1:port (a thread writes, then half-closes) and read until the
    end of stream: what came back."""
    import threading
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        def send():
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        writer = threading.Thread(target=send)
        writer.start()
        got = bytearray()
        while chunk := sock.recv(1 << 16):
            got += chunk
        writer.join()
    return bytes(got)


def _sockets_and_threads(pid: int) -> tuple[int, int]:
    fds = os.listdir(f"/proc/{pid}/fd")
    sockets = sum(os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:") for fd in fds
                  if os.path.exists(f"/proc/{pid}/fd/{fd}"))
    return sockets, len(os.listdir(f"/proc/{pid}/task"))


@root_only
@pytest.mark.parametrize("relay", ["splice", "copy"])
def test_the_kernel_proxy_carries_many_connections_at_once_and_keeps_nothing(ns, relay):
    """proxy --engine kernel with two loops: 48 clients at once, short echoes (copied) and
    3 MiB ones (spliced once a read fills the copy buffer), every echo byte-exact, one record
    per connection with its bytes, and afterwards the proxy holds no socket and no thread
    more than it did before the first client (no thread is started per connection)."""
    import concurrent.futures
    import threading
    ns.ip("addr", "add", "198.18.0.1/24", "dev", "lo")
    listener = _echo_server(ns, "198.18.0.1", 5000)
    proxy = _start(["proxy", "--engine", "kernel", "--netns", ns.name, "--listen",
                    "127.0.0.1:7140", "--to", "198.18.0.1:5000", "--json"],
                   env={**os.environ, "MPTCP_FAST_RELAY": relay,
                        "MPTCP_FAST_RELAY_LOOPS": "2"})
    try:
        assert json.loads(proxy.stdout.readline())["event"] == "listening"
        before = _sockets_and_threads(proxy.pid)
        lines: list = []                                  # the proxy's records, as they come
        reader = threading.Thread(target=lambda: lines.extend(proxy.stdout), daemon=True)
        reader.start()
        sizes = [64 + i if i % 4 else (3 << 20) + i for i in range(48)]
        streams = [hashlib.sha256(str(i).encode()).digest() * (size // 32 + 1)
                   for i, size in enumerate(sizes)]
        streams = [stream[:size] for stream, size in zip(streams, sizes)]
        with concurrent.futures.ThreadPoolExecutor(48) as pool:
            echoes = list(pool.map(lambda data: _echo_through(7140, data), streams))
        assert [echo == data for echo, data in zip(echoes, streams)] == [True] * 48
        end = time.monotonic() + 15
        while len(lines) < 48 and time.monotonic() < end:
            time.sleep(0.1)
        records = [json.loads(line) for line in list(lines)]
        assert sorted((r["upstream"], r["downstream"]) for r in records) == \
            sorted((size, size) for size in sizes)
        end = time.monotonic() + 10
        while _sockets_and_threads(proxy.pid) != before and time.monotonic() < end:
            time.sleep(0.1)
        assert _sockets_and_threads(proxy.pid) == before
        proxy.send_signal(signal.SIGINT)
        assert proxy.wait(30) == 130 and proxy.stderr.read() == ""
    finally:
        listener.close()
        proxy.kill()
        proxy.communicate()


@pytest.mark.requires("root", "setpriv")
def test_clear_errors_without_root(tmp_path):
    """Without CAP_NET_ADMIN (root's capability dropped with setpriv) the userspace engine says
    why in one line, no traceback, exit status 2."""
    done = subprocess.run(["setpriv", "--bounding-set=-net_admin", *CLI, "serve",
                           "--address", "198.18.0.2"], capture_output=True, text=True,
                          timeout=30, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == ("mptcp-fast serve: making a TUN device needs root "
                                   "(CAP_NET_ADMIN)")


@root_only
def test_clear_errors_for_a_name_or_address_in_use(ns):
    """A device name taken by another device, and an engine address the kernel owns (its
    packets would never reach the device): one line each, exit status 2."""
    ns.ip("addr", "add", "198.18.0.1/24", "dev", "lo")
    done = subprocess.run(CLI + ["serve", "--tun", "lo", "--address", "198.18.0.2"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr.strip() == ("mptcp-fast serve: the device name 'lo' is in use by another "
                                   "device or process")
    done = subprocess.run(CLI + ["serve", "--tun", MFN3, "--tun-address", "198.18.4.1/24",
                                 "--netns", ns.name, "--address", "198.18.0.1"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr.strip() == ("mptcp-fast serve: the address 198.18.0.1 is in use by the "
                                   "kernel (one of its own): the engine needs addresses of its own")


def test_clear_error_without_dev_net_tun(monkeypatch):
    """No /dev/net/tun (a kernel without TUN, a container without the device): a TunError
    that says so, not a FileNotFoundError traceback."""
    from mptcp_fast.net import tun

    def missing(path, *args, **kwargs):
        raise FileNotFoundError(2, "No such file or directory", path)
    monkeypatch.setattr(tun.os, "open", missing)
    with pytest.raises(tun.TunError) as caught:
        tun.TunDevice("mfz0")
    assert "/dev/net/tun does not exist" in str(caught.value)
    assert caught.value.errno == 2


def test_bad_device_arguments_are_refused_before_any_system_call():
    from mptcp_fast.net import tun
    with pytest.raises(ValueError, match="1..15 bytes"):
        tun.TunDevice("a-name-far-too-long")
    with pytest.raises(ValueError, match="mtu"):
        tun.TunDevice("mfz0", mtu=100)
    with pytest.raises(ValueError, match="queue_length"):
        tun.TunDevice("mfz0", queue_length=0)


@root_only
def test_the_device_queue_holds_a_burst_of_thousands_of_subflows(ns):
    """Linux gives a TUN device a queue of 500 packets and drops the rest: the configured
    device holds tun.QUEUE_LENGTH (what 2,000 proxied connections need), or what was asked."""
    from mptcp_fast.net import tun
    for asked, expected in ((None, tun.QUEUE_LENGTH), (4096, 4096)):
        options = {} if asked is None else {"queue_length": asked}
        with tun.TunDevice("mfq%d", **options) as device:
            device.configure(["198.18.6.1/24"], netns=ns.name)
            shown = ns.ip("-j", "link", "show", "dev", device.name)
            assert json.loads(shown)[0]["txqlen"] == expected


def _listen_backlog(port: int, timeout: float = 10.0) -> int:
    """The accept-queue limit of the listener on ``port`` here (ss: Send-Q of a LISTEN)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True,
                             text=True).stdout.split()
        if out:
            return int(out[2])
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


@root_only
@pytest.mark.parametrize("command, extra, expected", [
    (["proxy", "--listen", "127.0.0.1:7311", "--to", "198.18.0.1:5000"], [], None),
    (["proxy", "--listen", "127.0.0.1:7311", "--to", "198.18.0.1:5000"], ["--backlog", "300"],
     300),
    (["serve", "--port", "7311"], [], None),
], ids=["proxy", "proxy-backlog-300", "serve"])
def test_listeners_take_the_systems_backlog(command, extra, expected):
    """asyncio's default backlog of 100 overflowed with a few hundred clients at once (SYN
    cookies, resets): the proxy's TCP listener and a kernel server take net.core.somaxconn,
    or --backlog."""
    started = _start(command + ["--engine", "kernel"] + extra)
    try:
        assert _listen_backlog(7311) == (expected or system_backlog()) > 100
    finally:
        started.terminate()
        started.communicate(timeout=10)


@root_only
def test_ctrl_c_ends_the_proxy_quietly_with_connections_open(ns):
    """Ctrl-C with 200 connections in flight: exit 130 and not one line on stderr (each
    cancelled connection handler was reported as an exception, and handlers whose client had
    gone were collected pending: "Task was destroyed but it is pending!")."""
    ns.ip("addr", "add", "198.18.0.1/24", "dev", "lo")
    holder = ns.popen([sys.executable, "-c", (
        "import socket\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)\n"
        "s.bind(('198.18.0.1', 5000)); s.listen(1000); held = []\n"
        "print('ready', flush=True)\n"
        "while True: held.append(s.accept()[0])\n")], stdout=subprocess.PIPE, text=True)
    proxy = None
    try:
        holder.stdout.readline()
        proxy = _start(["proxy", "--engine", "kernel", "--netns", ns.name,
                        "--listen", "127.0.0.1:7120", "--to", "198.18.0.1:5000"])
        proxy.stdout.readline()
        clients = [socket.create_connection(("127.0.0.1", 7120)) for _ in range(200)]
        for client in clients:
            client.sendall(b"x" * 1000)
        _wait_established(ns, 5000, 200)                 # each carried on to the server
        proxy.send_signal(signal.SIGINT)
        _, err = proxy.communicate(timeout=30)
        assert proxy.returncode == 130 and err == ""
    finally:
        holder.kill()
        if proxy is not None:
            proxy.kill()


@root_only
def test_a_refused_upstream_resets_the_client_with_one_line(ns):
    """Nothing listens at --to: each client is reset (an empty stream ending cleanly would look
    like an answer) and the proxy says so in one line per client."""
    ns.ip("addr", "add", "198.18.0.1/24", "dev", "lo")
    proxy = _start(["proxy", "--engine", "kernel", "--netns", ns.name,
                    "--listen", "127.0.0.1:7121", "--to", "198.18.0.1:5999"])
    try:
        proxy.stdout.readline()
        ports = []
        for _ in range(3):
            client = socket.create_connection(("127.0.0.1", 7121))
            ports.append(client.getsockname()[1])
            with pytest.raises(ConnectionResetError):
                client.recv(100)
            client.close()
        proxy.send_signal(signal.SIGINT)
        _, err = proxy.communicate(timeout=30)
    finally:
        proxy.kill()
    assert err.splitlines() == [f"mptcp-fast proxy: 127.0.0.1:{port}: refused, "
                                f"198.18.0.1:5999: Connection refused" for port in ports]


def _proxy_to_namespace(ns, engine: str) -> tuple[list, str]:
    """The proxy's options to reach a server in ``ns`` at 198.18.0.1, and the address that
    server binds: the kernel engine's socket in ``ns`` (the server on its loopback), or the
    userspace engine's TUN device moved into ``ns`` (the kernel's side 198.18.0.1)."""
    if engine == "kernel":
        ns.ip("addr", "add", "198.18.0.1/24", "dev", "lo")
        return ["--netns", ns.name], "198.18.0.1"
    return ["--tun", MFN3, "--tun-address", "198.18.0.1/24", "--netns", ns.name,
            "--address", "198.18.0.2"], "0.0.0.0"


@root_only
@pytest.mark.parametrize("engine", ["userspace", "kernel"])
def test_a_client_reset_aborts_the_upstream(ns, engine):
    """The client resets mid-transfer: the proxy aborts its MPTCP side too, so the kernel
    server counts MP_FASTCLOSE and its socket reports the reset. (The userspace engine's side
    used to end with a DATA_FIN only, leaving the server sending into a half-closed
    connection; Linux resets a socket closed with unread data by itself.)"""
    extra, server_host = _proxy_to_namespace(ns, engine)
    server = KernelPeer(ns, send_bytes=1 << 30).listen(server_host, 5000)
    before = ns.counters()
    proxy = _start(["proxy", "--engine", engine, "--listen", "127.0.0.1:7122",
                    "--to", "198.18.0.1:5000", *extra])
    try:
        proxy.stdout.readline()
        client = socket.create_connection(("127.0.0.1", 7122))
        got = 0
        while got < 1 << 20:
            got += len(client.recv(1 << 16))
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()                                        # a RST to the proxy
        server.join(10)
        # the reset reaches whichever of the server's reads and writes comes first
        assert server.done() and isinstance(server.error, (ConnectionResetError,
                                                           BrokenPipeError))
        assert ns.counters_since(before).get("MPTcpExtMPFastcloseRx") == 1
    finally:
        proxy.kill()


def _connect_when_listening(address, timeout: float = 10.0) -> socket.socket:
    end = time.monotonic() + timeout
    while True:
        try:
            return socket.create_connection(address)
        except ConnectionRefusedError:
            if time.monotonic() > end:
                raise
            time.sleep(0.05)


def _stderr_of(process) -> str:
    process.kill()
    return process.communicate()[1]


def _line_within(stream, seconds: float):
    """The next line of a subprocess's pipe, or None if none comes within ``seconds``."""
    import select
    if select.select([stream], [], [], seconds)[0]:
        return stream.readline()
    return None


def _early_closing_server(ns, address: str, port: int, read: int, connections: int):
    """A kernel MPTCP server in ``ns`` that reads ``read`` bytes of each connection and then
    closes it, unread bytes and all (as a server that has seen enough of a request does). It
    closes once more bytes wait unread: Linux answers a close with unread data with a reset
    (MP_FASTCLOSE on MPTCP), a close with an empty receive queue with a clean DATA_FIN, and
    which one a close at an arbitrary moment meets is a race with the arriving segments."""
    import select
    import threading
    with ns.entered():
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((address, port))
    listener.listen(64)

    def serve():
        with listener:
            for _ in range(connections):
                sock, _ = listener.accept()
                with sock:
                    got = 0
                    while got < read and (chunk := sock.recv(min(1 << 16, read - got))):
                        got += len(chunk)
                    select.select([sock], [], [], 5)         # more bytes wait, unread
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


@root_only
@pytest.mark.parametrize("engine", ["userspace", "kernel"])
def test_a_server_that_closes_early_resets_the_client_and_ends_the_connection(ns, engine):
    """The server reads 64 KiB of the client's 4 MiB and closes: the client is reset (not
    handed a clean end of stream while its bytes vanish), and the proxy ends its handler (the
    --json line), keeping nothing of the connection: the bytes the client still sends are
    refused, not buffered for a connection that is gone."""
    extra, server_host = _proxy_to_namespace(ns, engine)
    server = _early_closing_server(ns, server_host, 5000, 1 << 16, connections=1)
    proxy = _start(["proxy", "--engine", engine, "--listen", "127.0.0.1:7123",
                    "--to", "198.18.0.1:5000", "--json", *extra])
    try:
        # the start-up record first, before anything else can follow it into the pipe's
        # buffer (_line_within selects on the descriptor, which a buffered line escapes)
        assert json.loads(proxy.stdout.readline())["event"] == "listening"
        client = _connect_when_listening(("127.0.0.1", 7123))
        client.settimeout(20)
        outcome = None
        try:
            client.sendall(bytes(4 << 20))
            client.shutdown(socket.SHUT_WR)
            outcome = client.recv(1 << 16)               # b"": a clean end of stream
        except OSError as exc:                           # a reset, a timeout, ENOTCONN
            outcome = exc
        client.close()
        server.join(10)
        # (ENOTCONN: the reset came between the last send and the half-close; a socket that
        # was reset is no longer connected, one that got a FIN still is)
        reset = isinstance(outcome, (ConnectionResetError, BrokenPipeError)) or (
            type(outcome) is OSError and outcome.errno == errno.ENOTCONN)
        assert reset, outcome
        line = _line_within(proxy.stdout, 15)            # the handler ended
        assert line, f"the proxy's handler never ended: {_stderr_of(proxy)}"
        record = json.loads(line)
        assert record["event"] == "connection" and record["upstream"] < 4 << 20
    finally:
        proxy.kill()
        proxy.communicate()


def _unsent_on(port: int) -> list[int]:
    """The bytes not yet sent (ss's notsent, absent when 0) of each connected socket on
    local ``port`` here."""
    out = subprocess.run(["ss", "-Htni", "state", "connected", f"sport = :{port}"],
                         capture_output=True, text=True).stdout
    sockets = re.split(r"\n(?=\S)", out.strip()) if out.strip() else []
    return [int(m.group(1)) if (m := re.search(r"notsent:(\d+)", text)) else 0
            for text in sockets]


@root_only
@pytest.mark.parametrize("engine", ["userspace", "kernel"])
def test_the_proxy_holds_little_unsent_for_a_client_that_does_not_read(ns, engine):
    """A client that stops reading: the proxy's socket to it keeps at most UNSENT_LIMIT
    bytes not yet sent (TCP_NOTSENT_LOWAT), not Linux's default of up to 4 MiB, so a hundred
    slow clients do not push the machine's TCP memory into pressure."""
    from mptcp_fast.cli.net import UNSENT_LIMIT
    if engine == "kernel":
        ns.ip("addr", "add", "198.18.0.1/24", "dev", "lo")
        extra = ["--netns", ns.name]
    else:
        extra = ["--tun", MFN2, *TUN, "--netns", ns.name, "--address", "198.18.0.2"]
    KernelPeer(ns, send_bytes=20 << 20, seed=11).listen("0.0.0.0", 5000)   # sends 20 MB
    proxy = _start(["proxy", "--engine", engine, "--listen", "127.0.0.1:7100",
                    "--to", "198.18.0.1:5000", "--count", "1", *extra])
    client = socket.socket()
    try:
        _wait_proxy_listening(proxy, 7100)
        client.connect(("127.0.0.1", 7100))
        client.shutdown(socket.SHUT_WR)              # it sends nothing, and reads nothing
        unsent, end = [], time.monotonic() + 10
        while time.monotonic() < end:                # the proxy fills what the kernel takes
            time.sleep(0.5)
            now = _unsent_on(7100)
            if now and unsent and now == unsent:
                break
            unsent = now
        assert unsent, "the proxy's socket to the client was not found"
        assert 0 < max(unsent) <= UNSENT_LIMIT + (64 << 10), unsent
    finally:
        client.close()
        proxy.kill()
        proxy.wait()


def test_two_runs_name_their_namespaces_and_devices_apart():
    """Every namespace and TUN device a testbed makes carries its run's tag: two test runs at
    once on one machine (each process its own tag) never share a name; MPTCP_FAST_RUN_TAG
    fixes the tag; a name too long for a device is refused."""
    code = "from mptcp_fast.testing.testbed import run_name; print(run_name('mfn', '0'))"
    names = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.strip() for _ in range(3)}
    assert len(names) == 3
    assert all(re.fullmatch(r"mfn[0-9a-z]{4}0", name) for name in names), names
    fixed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True, env={**os.environ, "MPTCP_FAST_RUN_TAG": "zz9"})
    assert fixed.stdout.strip() == "mfnzz90"
    with pytest.raises(ValueError, match="at most 15"):
        run_name("a-long-base", "-k")


@root_only
def test_the_kernel_proxy_in_two_workers_carries_every_connection_once(ns):
    """proxy --engine kernel --workers 2 (mptcp-to-tcp, SO_REUSEPORT listeners): 200
    connections from kernel MPTCP clients with a second subflow, eight at a time, each
    echoing 16 KiB through the proxy: every echo byte-exact, 200 records, each with the
    worker that carried it, both workers carrying a share, and the joins taken by the
    proxy's kernel (which routes each to the socket that holds its connection). One
    listening line, and the workers gone with the supervisor."""
    from concurrent.futures import ThreadPoolExecutor
    ns.ip("addr", "add", "198.18.0.1/24", "dev", "lo")
    ns.ip("addr", "add", "198.18.2.1/24", "dev", "lo")
    ns.ip("mptcp", "endpoint", "add", "198.18.2.1", "dev", "lo", "subflow")
    sink = _echo_server(None, "127.0.0.1", 7141, mptcp=False)
    before = ns.counters()
    proxy = _start(["proxy", "--engine", "kernel", "--direction", "mptcp-to-tcp", "--netns",
                    ns.name, "--listen", "198.18.0.1:5000", "--to", "127.0.0.1:7141",
                    "--workers", "2", "--count", "200", "--json"])

    def echo(i: int) -> bool:
        data = i.to_bytes(4, "big") * 4096
        with ns.entered():
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)
        with sock:
            sock.settimeout(30)
            sock.connect(("198.18.0.1", 5000))
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            got = bytearray()
            while chunk := sock.recv(1 << 16):
                got += chunk
        return bytes(got) == data

    try:
        _wait_listening(ns, 5000)
        with ThreadPoolExecutor(8) as pool:
            exact = list(pool.map(echo, range(200)))
        out, err = proxy.communicate(timeout=60)
    finally:
        proxy.kill()
        sink.close()
    assert all(exact) and proxy.returncode == 0 and err == ""
    (listening,) = _json_lines(out, "listening")
    assert listening["workers"] == 2
    records = _json_lines(out)
    assert len(records) == 200
    assert all(r["upstream"] == r["downstream"] == 16384 for r in records)
    shares = collections.Counter(r["worker"] for r in records)
    assert set(shares) == {0, 1} and min(shares.values()) >= 20, shares
    moved = ns.counters_since(before)
    assert moved.get("MPTcpExtMPCapableSYNRX", 0) >= 200
    assert moved.get("MPTcpExtMPJoinSynRx", 0) >= 1
    assert "--workers" not in ns.run("ps", "-eo", "args")   # no worker left behind


BALANCED = ["--worker-address", "198.18.20.2", "--worker-address", "198.18.21.2"]


@pytest.mark.parametrize("arguments, message", [
    # the client side (tcp-to-mptcp, the default) of the userspace engine has no workers
    (["--workers", "2", "--address", "198.18.0.2"],
     "--workers on the userspace engine is the MPTCP-facing server side (--direction "
     "mptcp-to-tcp, the plain proxy or the --convert server half)"),
    # the Convert server half in workers connects where each Connect TLV says
    (["--direction", "mptcp-to-tcp", "--convert", "--workers", "2", *BALANCED],
     "with --convert the server half connects where each Connect TLV says: no --to"),
    (["--direction", "mptcp-to-tcp", "--fastopen", "--workers", "2", *BALANCED],
     "--fastopen is the Convert halves' (--convert)"),
    (["--direction", "mptcp-to-tcp", "--workers", "2"],
     "--workers on the userspace engine needs --worker-address ADDR, once per worker"),
    (["--direction", "mptcp-to-tcp", "--workers", "3", *BALANCED],
     "--workers 3 needs one --worker-address per worker, got 2"),
    (["--direction", "mptcp-to-tcp", "--workers", "2", "--worker-address", "198.18.20.2",
      "--worker-address", "198.18.20.7"],
     "--worker-address 198.18.20.7 and 198.18.20.2 share 198.18.20.0/24"),
    (["--direction", "mptcp-to-tcp", "--workers", "2", "--worker-address", "198.18.20.254",
      "--worker-address", "198.18.21.2"],
     "--worker-address 198.18.20.254: its balanced address (the next one, 198.18.20.255)"),
    (["--direction", "mptcp-to-tcp", "--workers", "2", *BALANCED, "--address", "198.18.0.2"],
     "--worker-address makes each worker's addresses and routes"),
    (["--direction", "mptcp-to-tcp", "--workers", "2", *BALANCED, "--tun", "mfx0"],
     "each worker makes a TUN device of its own: --tun takes a template with %d"),
    (["--direction", "mptcp-to-tcp", "--workers", "2", "--worker-address", "2001:2:0:20::2",
      "--worker-address", "198.18.21.2", "--balancer", "none"],
     "--worker-address: the workers' addresses are of one family"),
    (["--engine", "kernel", "--direction", "mptcp-to-tcp", "--workers", "2", *BALANCED],
     "--worker-address is the userspace engine's"),
    (["--direction", "mptcp-to-tcp", "--workers", "2", *BALANCED, "--listen",
      "198.18.21.9:5000"],
     "the public address 198.18.21.9 is in worker 1's prefix 198.18.21.0/24"),
])
def test_workers_on_an_unsupported_combination_are_refused_clearly(arguments, message):
    """--workers with the userspace engine where it cannot work: one line saying why (and
    what to do instead), exit status 2, no traceback, nothing opened."""
    done = subprocess.run(CLI + ["proxy", "--listen", "5000", "--to", "127.0.0.1:1",
                                 *arguments],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.startswith(f"mptcp-fast proxy: {message}"), \
        done.stderr
    assert len(done.stderr.splitlines()) == 1


SERVER_HALF = ["--direction", "mptcp-to-tcp", "--convert", "--fastopen", "--workers", "2",
               *BALANCED, "--listen", "198.18.10.1:5000"]


@pytest.mark.parametrize("key, message", [
    ("00" * 15, "--fastopen-key: 15 bytes; a key is 16 or 32 bytes (32 or 64 hex digits)"),
    ("00" * 24, "--fastopen-key: 24 bytes; a key is 16 or 32 bytes"),
    ("5ec7e7" + "g" * 26, "--fastopen-key: not hex (16 or 32 bytes as 32 or 64 hex digits)"),
    ("", "--fastopen-key: 0 bytes"),
    ("@/nonexistent/key", "--fastopen-key @/nonexistent/key: No such file or directory"),
])
def test_a_bad_fastopen_key_is_refused_clearly_without_showing_it(key, message):
    """--fastopen-key on the userspace Convert server half (in workers): a wrong length, not
    hex, a file that is not there: one line, exit status 2, no traceback, nothing opened,
    and not the key (not even part of it)."""
    done = subprocess.run(CLI + ["proxy", *SERVER_HALF, "--fastopen-key", key],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.startswith(f"mptcp-fast proxy: {message}"), \
        done.stderr
    assert len(done.stderr.splitlines()) == 1 and done.stdout == ""
    if key and not key.startswith("@"):
        assert key[:6] not in done.stderr


def test_a_fastopen_key_file_that_is_not_a_key_is_not_shown(tmp_path):
    secret = tmp_path / "key"
    secret.write_text("5ec7e7" * 5 + "\n")           # 15 bytes: one short
    done = subprocess.run(CLI + ["proxy", *SERVER_HALF, "--fastopen-key", f"@{secret}"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr == (
        f"mptcp-fast proxy: --fastopen-key @{secret}: 15 bytes; a key is 16 or 32 bytes "
        "(32 or 64 hex digits)\n")


@pytest.mark.parametrize("arguments, message", [
    (["--engine", "kernel", "--direction", "mptcp-to-tcp", "--convert", "--fastopen"],
     "--fastopen-key is the userspace engine's (the kernel's TFO key: sysctl "
     "net.ipv4.tcp_fastopen_key)"),
    (["--direction", "mptcp-to-tcp", "--convert"],
     "--fastopen-key is the key of the server half's TFO cookies: with --fastopen"),
    (["--direction", "tcp-to-mptcp", "--front", "socks5", "--convert", "--fastopen", "--to",
      "198.18.0.1:5000"],
     "--fastopen-key is the key of the server half's TFO cookies"),
])
def test_a_fastopen_key_where_no_cookie_is_made_is_refused(arguments, message):
    done = subprocess.run(CLI + ["proxy", "--listen", "5000", *arguments,
                                 "--fastopen-key", "00" * 16],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.startswith(f"mptcp-fast proxy: {message}"), \
        done.stderr


def test_workers_cookies_are_good_at_each_other_and_only_for_their_client():
    """balanced.BalancedCookies: a cookie made at one worker's balanced address (with the
    key they share) is taken at another's, not for another client, not under another key;
    at a worker's other addresses the engine's own cookies (client and server address)."""
    from mptcp_fast.cli.balanced import BalancedCookies
    from mptcp_fast.engine.cookies import FastOpenCookies
    packed = socket.inet_aton
    key, client, now = b"k" * 16, packed("198.18.0.2"), 1000.0
    one = BalancedCookies(key, "198.18.20.3")
    other = BalancedCookies(key, "198.18.21.3")
    cookie = one.make(client, packed("198.18.20.3"), now)
    assert other.check(client, packed("198.18.21.3"), cookie, now) == other.VALID
    assert other.check(packed("198.18.0.9"), packed("198.18.21.3"), cookie, now) is None
    assert BalancedCookies(b"x" * 16, "198.18.21.3").check(
        client, packed("198.18.21.3"), cookie, now) is None
    own = packed("198.18.21.2")                        # not the balanced address
    assert other.make(client, own, now) == FastOpenCookies(key).make(client, own, now)


@pytest.mark.parametrize("arguments, message", [
    (["--engine", "kernel", "--workers", "2"],
     "serve --workers and --worker-address are the userspace engine's"),
    (["--workers", "2", *BALANCED],
     "--balancer nftables spreads the connections to one public address: --public ADDRESS"),
    (["--workers", "2", *BALANCED, "--public", "2001:2::1"],
     "the public address 2001:2::1 and --worker-address are of two families"),
])
def test_serve_workers_are_refused_clearly_where_they_cannot_work(arguments, message):
    done = subprocess.run(CLI + ["serve", *arguments], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and done.stderr.startswith(f"mptcp-fast serve: {message}"), \
        done.stderr


def test_the_nftables_balancer_needs_one_public_address():
    done = subprocess.run(CLI + ["proxy", "--listen", "5000", "--to", "127.0.0.1:1",
                                 "--direction", "mptcp-to-tcp", "--workers", "2", *BALANCED],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr == (
        "mptcp-fast proxy: --balancer nftables spreads the connections to one public address: "
        "--listen ADDRESS:PORT (not every address)\n")


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143),
                                         (signal.SIGKILL, -9)])
def test_ending_the_supervisor_ends_every_worker(sig, status):
    """--workers 3 in text mode: one listening line naming the workers. Ctrl-C (SIGINT to
    the supervisor alone) or SIGTERM: its exit status, nothing printed, and no worker left;
    SIGKILL: the workers follow it (the kernel's parent-death signal), the port is free."""
    proxy = _start(["proxy", "--engine", "kernel", "--direction", "mptcp-to-tcp", "--listen",
                    "127.0.0.1:5317", "--to", "127.0.0.1:7317", "--workers", "3"])
    try:
        first = proxy.stdout.readline()
        running = subprocess.run(["pgrep", "-fc", "listen 127.0.0.1:5317"],
                                 capture_output=True, text=True).stdout.split()
        proxy.send_signal(sig)
        out, err = proxy.communicate(timeout=20)
    finally:
        proxy.kill()
    assert first == ("proxy (mptcp-to-tcp, kernel): 127.0.0.1:5317 -> 127.0.0.1:7317 "
                     "(3 workers)\n")
    assert running == ["4"]                      # the supervisor and its three workers
    assert (proxy.returncode, out, err) == (status, "", "")
    end = time.monotonic() + 10
    while subprocess.run(["pgrep", "-f", "listen 127.0.0.1:5317"],
                         capture_output=True).returncode != 1:   # 1: none
        assert time.monotonic() < end, "a worker outlived its supervisor"
        time.sleep(0.05)
