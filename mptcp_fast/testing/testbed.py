"""Testbeds with the Linux kernel as the MPTCP peer: what the interop tests, the
benchmarks and anyone checking the engine against the kernel build on. Root only.

``TunBed``: the kernel in a namespace of its own, and this process's engine behind a TUN
device in that namespace::

    namespace "<name>-k<tag>" (the kernel)                 this process (the engine)
      device <name><tag>0: 198.18.0.1/24, ...             <->  fd: 198.18.0.2, 198.18.2.2, ...

Path ``i`` is the pair (198.18.{2i}.1 kernel, 198.18.{2i}.2 engine); the /24 on the device
routes the engine's addresses to the descriptor. ``<tag>`` is this run's ``RUN_TAG``: two runs
at once on one machine do not collide. ``VethBed``: the same addresses between two
kernel namespaces over one veth pair per path, the kernel<->kernel reference.

``KernelPeer``: a kernel MPTCP socket in the namespace, run in a thread, that sends a seeded
stream (the engine's ``apps.pattern``) and hashes what it receives.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import socket
import threading
import time

from ..net import kernel
from ..wire import packet as pk
from ..sim.apps import pattern
from ..net.netns import Namespace, veth_pair
from ..net.tun import TunDevice

__all__ = ["TunBed", "TunPairBed", "VethBed", "KernelPeer", "kernel_namespace", "path_addresses",
           "stream", "fix_tcp_checksum", "find_mptcp_option", "run_name", "RUN_TAG"]

JOIN_WAIT = 3.0        # seconds a side may wait for the joins a test expects before it ends
TCP_ESTABLISHED = 1    # tcpi_state of an established subflow (include/net/tcp_states.h)


# This process's tag, put into the name of every namespace and TUN device a testbed makes:
# two runs at once on one machine (two test suites, a benchmark beside the tests) never
# share a name, so neither replaces nor deletes the other's. Four letters or digits drawn
# from the process id and a random number; MPTCP_FAST_RUN_TAG sets it (for a run whose
# names must be known in advance).
_TAG_LETTERS = "0123456789abcdefghijklmnopqrstuvwxyz"
RUN_TAG = os.environ.get("MPTCP_FAST_RUN_TAG") or "".join(
    _TAG_LETTERS[n % 36] for n in (os.getpid(), os.getpid() // 36,
                                   random.randrange(36), random.randrange(36)))
IFNAMSIZ = 16          # a device name is at most 15 characters (include/uapi/linux/if.h)


def run_name(base: str, suffix: str = "") -> str:
    """``base``, this run's tag (``RUN_TAG``) and ``suffix``: the name of a namespace or a
    device a test makes. Raises ValueError when it would be too long for a device name."""
    name = f"{base}{RUN_TAG}{suffix}"
    if len(name) >= IFNAMSIZ or not RUN_TAG.isalnum():
        raise ValueError(f"{name!r}: a namespace or device name is at most "
                         f"{IFNAMSIZ - 1} characters (and the run's tag letters and digits)")
    return name


def path_addresses(i: int, ipv6: bool = False) -> tuple[str, str]:
    """(kernel side, engine or second-kernel side) of path ``i``: 198.18.{2i}.1 / .2, or with
    ``ipv6`` 2001:2:0:{i}::1 / ::2 (the IPv6 benchmarking range)."""
    if ipv6:
        return f"2001:2:0:{i}::1", f"2001:2:0:{i}::2"
    return f"198.18.{2 * i}.1", f"198.18.{2 * i}.2"


def stream(seed: int, size: int) -> bytes:
    """The first ``size`` bytes of the seeded stream that BulkApp and KernelPeer send."""
    block = pattern(seed)[:len(pattern(seed)) // 2]
    return (block * (size // len(block) + 1))[:size]


def fix_tcp_checksum(packet: bytearray) -> bytearray:
    """Recompute the TCP checksum of a packet a test has edited (what a middlebox does)."""
    ip_len = (packet[0] & 0x0F) * 4 if packet[0] >> 4 == 4 else 40
    checksum = pk.tcp_checksum(packet)
    packet[ip_len + 16:ip_len + 18] = checksum.to_bytes(2, "big")
    return packet


def find_mptcp_option(packet, subtype: int, length: int | None = None):
    """Where the MPTCP option of ``subtype`` (and ``length``) starts in an IP packet, or None:
    for tests that edit what crosses the wire."""
    if len(packet) < 20:
        return None
    ip_len = (packet[0] & 0x0F) * 4 if packet[0] >> 4 == 4 else 40
    if len(packet) < ip_len + 20 or (packet[0] >> 4 == 4 and packet[9] != 6):
        return None
    end = ip_len + (packet[ip_len + 12] >> 4) * 4
    i = ip_len + 20
    while i < min(end, len(packet)):
        kind = packet[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= end or packet[i + 1] < 2:
            break
        size = packet[i + 1]
        if kind == 30 and i + 2 < end and packet[i + 2] >> 4 == subtype and \
                (length is None or size == length):
            return i
        i += size
    return None


def _prepare(ns: Namespace, checksums: bool) -> None:
    ns.sysctl("net.mptcp.enabled", 1)
    ns.sysctl("net.mptcp.checksum_enabled", int(checksums))
    ns.sysctl("net.ipv4.conf.all.rp_filter", 0)
    ns.sysctl("net.ipv4.conf.default.rp_filter", 0)
    ns.ip("mptcp", "limits", "set", "subflows", 8, "add_addr_accepted", 8)


def kernel_namespace(name: str, checksums: bool = False) -> Namespace:
    """A fresh namespace ready to be an MPTCP peer: MPTCP on (checksums as asked), no reverse
    path filter, the path manager's limits raised to 8 subflows and 8 accepted ADD_ADDRs.
    Named ``name`` with this run's tag (``run_name``): ``ns.name`` says the whole name."""
    ns = Namespace.create(run_name(name))
    try:
        _prepare(ns, checksums)
    except BaseException:
        ns.delete()
        raise
    return ns


class _Bed:
    """A testbed is a context manager: leaving it deletes what it made (``close``)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class TunBed(_Bed):
    """See the module text. ``paths`` paths; ``offload``: the TUN device with GSO/checksum
    offload (TunDevice); ``checksums``: the kernel's net.mptcp.checksum_enabled; ``ipv6``: the
    paths are IPv6 (``path_addresses``), with duplicate address detection off."""

    def __init__(self, name: str = "mft", paths: int = 2, offload: bool = True,
                 checksums: bool = False, mtu: int = 1500, ipv6: bool = False):
        self.ns = kernel_namespace(f"{name}-k", checksums)
        self.device = None
        try:
            self.device = TunDevice(run_name(name, "0"), offload=offload, mtu=mtu)
            self.kernel_addresses = [path_addresses(i, ipv6)[0] for i in range(paths)]
            self.engine_addresses = [path_addresses(i, ipv6)[1] for i in range(paths)]
            self.device.configure([], netns=self.ns.name)
            for address in self.kernel_addresses:
                self.ns.ip("addr", "add", address + ("/64" if ipv6 else "/24"),
                           "dev", self.device.name, *(["nodad"] if ipv6 else []))
        except BaseException:
            self.close()
            raise

    def endpoint(self, address: str, *flags: str) -> None:
        """An endpoint of the kernel's path manager (``ip mptcp endpoint add``)."""
        self.ns.ip("mptcp", "endpoint", "add", address, "dev", self.device.name, *flags)

    def counters(self) -> dict:
        return self.ns.counters()

    def close(self) -> None:
        if self.device is not None:
            self.device.close()
        self.ns.delete()


class TunPairBed(_Bed):
    """Two kernels, ``<name>-a<tag>`` (198.18.{2i}.1) and ``<name>-b<tag>`` (198.18.{2i}.2), each behind
    a TUN device whose /24s route the other's addresses into this process, joined by a
    ``TunBridge`` (``bed.bridge``): the kernel<->kernel reference over the impairments the
    engine's TunBed runs on."""

    def __init__(self, name: str = "mfp", paths: int = 2, checksums: bool = False):
        from ..net.tunhost import TunBridge
        self.a = kernel_namespace(f"{name}-a", checksums)
        self.b = kernel_namespace(f"{name}-b", checksums)
        self.devices = []
        try:
            self.a_addresses = [path_addresses(i)[0] for i in range(paths)]
            self.b_addresses = [path_addresses(i)[1] for i in range(paths)]
            for ns, addresses, tag in ((self.a, self.a_addresses, "a"),
                                       (self.b, self.b_addresses, "b")):
                device = TunDevice(run_name(f"{name}{tag}", "0"), offload=False)
                self.devices.append(device)
                device.configure([a + "/24" for a in addresses], netns=ns.name)
            self.bridge = TunBridge(*self.devices)  # type: ignore[arg-type]  # (the two devices)
        except BaseException:
            self.close()
            raise

    def endpoint(self, side: str, i: int, *flags: str) -> None:
        ns, addresses = (self.a, self.a_addresses) if side == "a" else (self.b, self.b_addresses)
        device = self.devices[0 if side == "a" else 1]
        ns.ip("mptcp", "endpoint", "add", addresses[i], "dev", device.name, *flags)

    def close(self) -> None:
        for device in self.devices:
            device.close()
        self.a.delete()
        self.b.delete()


class VethBed(_Bed):
    """Two kernel namespaces, ``<name>-a<tag>`` (198.18.{2i}.1) and ``<name>-b<tag>`` (198.18.{2i}.2),
    joined by one veth pair per path."""

    def __init__(self, name: str = "mfv", paths: int = 2, checksums: bool = False):
        self.a = Namespace.create(run_name(f"{name}-a"))
        self.b = Namespace.create(run_name(f"{name}-b"))
        try:
            for ns in (self.a, self.b):
                _prepare(ns, checksums)
            self.a_addresses, self.b_addresses = [], []
            for i in range(paths):
                left, right = path_addresses(i)
                veth_pair(self.a, f"{name}a{i}", self.b, f"{name}b{i}")
                self.a.ip("addr", "add", left + "/24", "dev", f"{name}a{i}")
                self.b.ip("addr", "add", right + "/24", "dev", f"{name}b{i}")
                self.a_addresses.append(left)
                self.b_addresses.append(right)
            self.name = name
        except BaseException:
            self.close()
            raise

    def endpoint(self, side: str, i: int, *flags: str) -> None:
        ns = self.a if side == "a" else self.b
        address = (self.a_addresses if side == "a" else self.b_addresses)[i]
        ns.ip("mptcp", "endpoint", "add", address, "dev", f"{self.name}{side}{i}", *flags)

    def close(self) -> None:
        self.a.delete()
        self.b.delete()


class KernelPeer:
    """A kernel MPTCP socket inside ``ns`` (None: this process's namespace), in a thread:
    ``listen(address, port)`` or ``connect(address, port)``, then it sends ``send_bytes`` of
    the stream ``seed`` (and shuts its side down) while it reads to the end. ``mptcp=False``
    makes a plain TCP socket.
    ``hold``: seconds after the connection opens before its side is shut down at the earliest.
    Linux accepts and opens MP_JOINs only while the MPTCP socket is ESTABLISHED (not once it
    sent its DATA_FIN), so a peer that sends little would end before any join; the kernel's
    own selftests (mptcp_connect -j) wait in the same way. ``subflows``: the hold also lasts
    until that many subflows are established, for at most ``JOIN_WAIT`` seconds (a join still
    in SYN-SENT when the socket shuts down is abandoned, never sent again). ``family``:
    AF_INET6 for an IPv6 socket (IPv4 peers are then reached as v4-mapped addresses).
    ``joined_first``: send nothing before those ``subflows`` are established (for at most
    ``JOIN_WAIT`` seconds). A receiving Linux 6.18 can misplace a join's first data when it
    arrives while the receiving application holds its socket (docs/kernel-behaviour.md §8):
    a test of the application on a kernel receiver that must not meet that avoids it so.

    After ``join()``: ``received``, ``received_sha256``, ``sent_sha256``, ``info`` (MptcpInfo
    or None), ``subflows`` (their addresses), ``error`` (an exception, or None)."""

    def __init__(self, ns: Namespace, send_bytes: int = 0, seed: int = 1, mptcp: bool = True,
                 close_after_read: bool = True, hold: float = 0.0,
                 family: int = socket.AF_INET, congestion: str | None = None,
                 subflows: int = 1, joined_first: bool = False):
        self.ns = ns
        self.subflows_wanted = subflows
        self.joined_first = joined_first
        self.join_waited: float | None = None     # seconds joined_first waited
        self.congestion = congestion
        self.hold = hold
        self.family = family
        self.opened_at: float | None = None
        self.finished_at: float | None = None   # when reading met the end of the stream
        self.send_bytes = send_bytes
        self.seed = seed
        self.mptcp = mptcp
        self.close_after_read = close_after_read
        self.received = 0
        self.received_sha256: str | None = None
        self.sent_sha256: str | None = None
        self.info: kernel.MptcpInfo | None = None
        self.subflows: list[tuple] = []
        self.error: BaseException | None = None
        self.sock: socket.socket | None = None
        self.connected = threading.Event()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def _socket(self) -> socket.socket:
        with self.ns.entered() if self.ns is not None else contextlib.nullcontext():
            if self.mptcp:
                sock = kernel.mptcp_socket(self.family)
            else:
                sock = socket.socket(self.family, socket.SOCK_STREAM)
        if self.congestion is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, self.congestion.encode())
        return sock

    def listen(self, address: str, port: int) -> "KernelPeer":
        self._listener = self._socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((address, port))
        self._listener.listen(8)
        self._start(lambda: self._listener.accept()[0])
        return self

    def connect(self, address: str, port: int, timeout: float = 10.0) -> "KernelPeer":
        sock = self._socket()

        def dial():
            sock.settimeout(timeout)
            sock.connect((address, port))
            sock.settimeout(None)
            return sock
        self._start(dial)
        return self

    def _start(self, make) -> None:
        self._thread = threading.Thread(target=self._run, args=(make,), daemon=True)
        self._thread.start()

    def _run(self, make) -> None:
        try:
            self.sock = sock = make()
            self.opened_at = time.monotonic()
            self.connected.set()
            sender = threading.Thread(target=self._send, args=(sock,), daemon=True)
            sender.start()
            digest = hashlib.sha256()
            buffer = bytearray(1 << 20)
            view = memoryview(buffer)
            while True:
                n = sock.recv_into(buffer)
                if not n:
                    break
                digest.update(view[:n])
                self._received(view[:n])
                self.received += n
            self.finished_at = time.monotonic()
            sender.join()
            self.received_sha256 = digest.hexdigest()
            self._record(sock)
            if self.close_after_read:
                sock.close()
        except BaseException as exc:                         # reported to the test
            self.error = exc
            self.connected.set()

    def _received(self, chunk: memoryview) -> None:
        """Each piece read, as it comes (a subclass that keeps the bytes overrides it)."""

    def _send(self, sock) -> None:
        source = pattern(self.seed)
        block = len(source) // 2
        view = memoryview(source)
        digest = hashlib.sha256()
        sent = 0
        try:
            if self.joined_first:
                start = time.monotonic()
                self._wait_for_subflows(sock)
                self.join_waited = time.monotonic() - start
            while sent < self.send_bytes:
                start = sent % block
                piece = view[start:start + min(block, self.send_bytes - sent, 1 << 20)]
                sock.sendall(piece)
                digest.update(piece)
                sent += len(piece)
            wait = self.opened_at + self.hold - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self._wait_for_subflows(sock)
            sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            self.error = exc
        self.sent_sha256 = digest.hexdigest()

    def _wait_for_subflows(self, sock) -> None:
        """Until ``subflows_wanted`` subflows are ESTABLISHED, or JOIN_WAIT seconds."""
        if not self.mptcp or self.subflows_wanted <= 1:
            return
        deadline = time.monotonic() + JOIN_WAIT
        while time.monotonic() < deadline:
            try:
                up = sum(1 for info in kernel.subflow_tcp_info(sock)
                         if info.state == TCP_ESTABLISHED)
            except (OSError, kernel.KernelMptcpError):
                return
            if up >= self.subflows_wanted:
                return
            time.sleep(0.01)

    def _record(self, sock) -> None:
        if self.mptcp:
            try:
                self.info = kernel.mptcp_info(sock)
                self.subflows = kernel.subflow_addresses(sock)
            except (OSError, kernel.KernelMptcpError):
                pass

    def done(self) -> bool:
        return self._thread is not None and not self._thread.is_alive()

    def join(self, timeout: float = 10.0) -> None:
        self._thread.join(timeout)
        if self._listener is not None:
            self._listener.close()
