"""A Linux TUN device: whole IP packets between the kernel and this process.

    dev = TunDevice("mft0", offload=True)      # needs CAP_NET_ADMIN and /dev/net/tun
    dev.configure(["198.18.0.1/24"])           # the kernel's side: an address, up, a route
    packets = dev.read_batch()                 # every packet the kernel routed to the device
    dev.write(packet)                          # a packet for the kernel, as if it arrived

The device is opened with IFF_TUN | IFF_NO_PI (Documentation/networking/tuntap.rst): a read
returns one IP packet, a write injects one. The descriptor is non-blocking; ``read_batch``
reads until the queue is empty or the batch is full.

With ``offload=True`` the device also has IFF_VNET_HDR and TUNSETOFFLOAD (checksum, TSO4,
TSO6): every packet then carries a ``struct virtio_net_hdr`` (include/uapi/linux/virtio_net.h)
and the kernel hands the device whole TSO segments of up to 64 KiB with the TCP checksum left
to be completed (VIRTIO_NET_HDR_F_NEEDS_CSUM: the field holds the pseudo-header sum only).
The driver completes those checksums, so the engine reads ordinary packets. Written packets
larger than the device's MTU go out as GSO (gso_type TCPV4/TCPV6, gso_size cut from the MTU):
the kernel takes them as one segment, as from a NIC with GRO, and cuts them only if it
forwards them. One TSO segment costs one read or write where 44 packets would cost 44.

A TUN device disappears when its descriptor closes, unless it is made persistent
(``persist=True``: TUNSETPERSIST): then it stays, with its addresses, routes and interface
index, and the next ``TunDevice`` of that name takes it over. That matters to the kernel's
MPTCP endpoints bound to the device (``ip mptcp endpoint add ... dev mft0``): they follow the
interface index, so a device made anew under the same name leaves them dead
(MPJoinSynTxConnectErr) while a persistent one keeps them working. ``TunDevice.remove(name)``
deletes a persistent device; ``kernel_endpoints_on(name)`` lists the endpoints bound to one.
Errors are :class:`TunError` with the reason in words (no root, no /dev/net/tun, the name in
use).
"""

from __future__ import annotations

import collections
import contextlib
import errno
import fcntl
import os
import socket
import struct
import subprocess
import threading
from typing import Iterable

from ..wire import packet as pk
from ..errors import MptcpError, PacketError

__all__ = ["TunDevice", "TunError", "VNET_HDR_LEN", "kernel_endpoints_on"]

TUNSETIFF = 0x400454CA                   # _IOW('T', 202, int)
TUNSETPERSIST = 0x400454CB               # _IOW('T', 203, int)
TUNSETOFFLOAD = 0x400454D0               # _IOW('T', 208, unsigned int)
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6 = 0x01, 0x02, 0x04

# struct virtio_net_hdr (little-endian on every host TUN serves: TUNSETVNETLE is the default)
# flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
_VNET = struct.Struct("<BBHHHH")
VNET_HDR_LEN = _VNET.size                 # 10
VIRTIO_NET_HDR_F_NEEDS_CSUM = 1
GSO_NONE, GSO_TCPV4, GSO_TCPV6 = 0, 1, 4
_PLAIN = _VNET.pack(0, GSO_NONE, 0, 0, 0, 0)

MAX_PACKET = 65535 + 40                  # the largest IPv4 packet, or an IPv6 payload + header

# How many packets the kernel may queue on the device for this process to read (the device's
# txqueuelen). Linux gives a TUN device 500 and drops what comes beyond, counted as the
# device's TX drops, and each drop is a retransmission for the kernel's sender. Measured with
# 2,000 concurrent 256 KiB echoes through the proxy (bench/load_proxy.py): at 500 the device
# dropped ~45 % of what the kernel sent it (the run took 65 s), at 16,384 ~7 %, at 65,536
# none (10 s). The queued packets are charged to the kernel's sending sockets, so their
# send buffers, not this length, bound the memory.
QUEUE_LENGTH = 65536


_HEAP_KEPT = False


def _keep_heap() -> None:
    """Stop glibc from giving the top of its heap back to the kernel after every 64 KiB.

    With offload every read is a 64 KiB bytes object and the engine makes one per segment
    it sends or takes: below glibc's mmap threshold (128 KiB) they come from the top of the
    heap, and freeing them leaves more than M_TRIM_THRESHOLD (128 KiB) free there, so glibc
    shrinks the heap with brk and grows it again for the next one: two system calls per
    segment (brk was 5-9 % of the engine's loop in py-spy). A trim threshold of 64 MiB and a
    top pad of 16 MiB keep those pages; the process keeps at most that much more memory.
    Once per process, glibc only (mallopt; nothing elsewhere)."""
    global _HEAP_KEPT
    if _HEAP_KEPT:
        return
    _HEAP_KEPT = True
    try:
        import ctypes
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_top_pad = -1, -2          # malloc.h
    mallopt(m_trim_threshold, 64 << 20)
    mallopt(m_top_pad, 16 << 20)


class TunError(MptcpError, OSError):
    """The TUN device could not be made or configured; ``errno`` is the system's."""


class TunDevice:
    """A Linux TUN device (IFF_TUN, IFF_NO_PI), non-blocking, read and written in batches
    (see the module text). Needs root (CAP_NET_ADMIN) and /dev/net/tun.

    Args:
        name: the device's name, or a template such as ``"mft%d"`` (the kernel picks the
            number; ``self.name`` is the name it gave).
        offload: add IFF_VNET_HDR with checksum and TSO offload: the kernel hands over
            segments up to 64 KiB and takes larger ones as GSO.
        mtu: the device's MTU (576..65535), set by ``configure``.
        queue_length: the device's transmit queue length, set by ``configure``.
        persist: the device outlives this object and is taken over by the next one of its
            name (``self.reused`` says whether this one found it); needs a fixed name.
        netns: make (or find) the device inside that namespace rather than here
            (``configure`` then has nothing to move).

    Raises:
        ValueError: a bad name, MTU or queue length, or ``persist`` with a template name.
        TunError: no /dev/net/tun, not root, or the name is in use.

    Use it as a context manager, or call ``close()``.
    """

    def __init__(self, name: str = "mft%d", offload: bool = False, mtu: int = 1500,
                 queue_length: int = QUEUE_LENGTH, persist: bool = False,
                 netns: str | None = None):
        if not isinstance(name, str) or not 0 < len(name.encode()) < 16:
            raise ValueError(f"a device name is 1..15 bytes, got {name!r}")
        if persist and "%" in name:
            raise ValueError(f"a persistent device needs a fixed name, not the template {name!r}")
        if not isinstance(mtu, int) or not 576 <= mtu <= 65535:
            raise ValueError(f"mtu must be an int in 576..65535, got {mtu!r}")
        if not isinstance(queue_length, int) or not 1 <= queue_length <= 1 << 20:
            raise ValueError(f"queue_length must be an int in 1..{1 << 20}, got "
                             f"{queue_length!r}")
        self.offload = bool(offload)
        self.mtu = mtu
        self.queue_length = queue_length
        self.persist = bool(persist)
        self.netns = netns
        self.stats = {"read": 0, "written": 0, "gso_read": 0, "gso_written": 0,
                      "checksums_completed": 0, "dropped_write": 0}
        if netns is None:
            self._open(name)
        else:
            from .netns import Namespace         # the device is made where the thread is
            with Namespace(netns).entered():
                self._open(name)

    def _open(self, name: str) -> None:
        offload, persist = self.offload, self.persist
        self.reused = False
        if persist:
            with contextlib.suppress(OSError):
                self.reused = socket.if_nametoindex(name) > 0
        try:
            fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            raise TunError(errno.ENOENT, "/dev/net/tun does not exist: this kernel has no TUN "
                           "support (modprobe tun) or the container does not pass the device "
                           "through") from None
        except PermissionError:
            raise TunError(errno.EACCES, "opening /dev/net/tun was refused: a TUN device "
                           "needs root (CAP_NET_ADMIN)") from None
        flags = IFF_TUN | IFF_NO_PI | (IFF_VNET_HDR if offload else 0)
        request = struct.pack("16sH22x", name.encode(), flags)      # struct ifreq
        try:
            answer = fcntl.ioctl(fd, TUNSETIFF, request)
            if offload:
                fcntl.ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)
            if persist:
                fcntl.ioctl(fd, TUNSETPERSIST, 1)
        except OSError as exc:
            os.close(fd)
            if exc.errno == errno.EPERM:
                raise TunError(exc.errno, "making a TUN device needs root (CAP_NET_ADMIN)") \
                    from None
            if exc.errno == errno.EBUSY or (exc.errno == errno.EINVAL and "%" not in name
                                            and os.path.exists(f"/sys/class/net/{name}")):
                raise TunError(exc.errno, f"the device name {name!r} is in use by another "
                               "device or process") from None
            raise TunError(exc.errno, f"TUNSETIFF {name!r}: {exc.strerror}") from None
        self.fd = fd
        self.name = answer[:16].rstrip(b"\0").decode()
        if offload:
            _keep_heap()
        self._header = VNET_HDR_LEN if offload else 0
        # Without offload the kernel hands the device nothing larger than its MTU (it has no
        # TSO to advertise, so it segments and fragments to the MTU first), and a read that
        # asks for 64 KiB makes Python allocate 64 KiB for every 1500-byte packet (a malloc
        # beyond pymalloc's, often a brk, then a shrink): ask for what can come. A packet
        # larger than a read would be cut, so read_batch follows ``self.mtu`` (configure's).
        self._read_size = MAX_PACKET + VNET_HDR_LEN

    # ------------------------------------------------------------------ set-up
    def configure(self, addresses: Iterable[str] = (), routes: Iterable[str] = (),
                  netns: str | None = None) -> None:
        """Give the device the kernel side's ``addresses`` ("198.18.0.1/24": the prefix routes
        the rest of the subnet to this process), extra ``routes`` ("198.18.5.0/24") through
        it, the MTU and the queue length, and bring it up. ``netns``: move it into that
        namespace first (the descriptor keeps working there). Uses iproute2's ``ip``."""
        if netns is not None and netns != self.netns:
            self._ip(["link", "set", "dev", self.name, "netns", netns])
        prefix = ["-n", netns] if netns is not None else []
        self._ip(prefix + ["link", "set", "dev", self.name, "mtu", str(self.mtu),
                           "txqueuelen", str(self.queue_length), "up"])
        # a device taken over keeps what it had: "replace" adds or keeps, never fails on it
        verb = "replace" if self.reused else "add"
        for address in addresses:
            self._ip(prefix + ["addr", verb, str(address), "dev", self.name])
        for route in routes:
            self._ip(prefix + ["route", verb, str(route), "dev", self.name])

    def check_routed(self, addresses, netns: str | None = None) -> None:
        """Each of the engine's ``addresses`` must be routed into this device, or the kernel
        would keep its packets: a TunError names the first that is the kernel's own address
        (in use) or leaves through another device."""
        prefix = ["-n", netns] if netns is not None else []
        for address in addresses:
            route = self._ip(prefix + ["route", "get", str(address)])
            if route.startswith("local"):
                raise TunError(errno.EADDRINUSE, f"the address {address} is in use by the "
                               "kernel (one of its own): the engine needs addresses of its own")
            if f" dev {self.name} " not in f" {route} ":
                raise TunError(errno.EADDRNOTAVAIL, f"the address {address} is not routed into "
                               f"{self.name} (the kernel sends it elsewhere: {route.strip()})")

    @staticmethod
    def _ip(arguments) -> str:
        try:
            done = subprocess.run(["ip", *arguments], capture_output=True, text=True)
        except FileNotFoundError:
            raise TunError(errno.ENOENT, "configuring the device needs iproute2's 'ip' "
                           "command") from None
        if done.returncode:
            message = done.stderr.strip() or f"exit status {done.returncode}"
            code = errno.EADDRINUSE if "exists" in message else errno.EINVAL
            raise TunError(code, f"ip {' '.join(arguments)}: {message}")
        return done.stdout

    # ------------------------------------------------------------------ packets
    def fileno(self) -> int:
        """The device's file descriptor (for a selector or an event loop)."""
        return self.fd

    def read_batch(self, limit: int = 256, verified: list[bool] | None = None) -> list:
        """Up to ``limit`` packets waiting on the device (an empty list when none are).

        With offload, a packet the kernel left with a partial checksum has it completed here,
        unless ``verified`` is a list: then such a packet comes as it is (its checksum field
        holds the pseudo-header sum), without a copy or a pass over its bytes, and
        ``verified`` gets one flag per packet returned, True for those: the kernel made them
        and vouches for them (CHECKSUM_PARTIAL), as ``Endpoint.receive_packet(verified=)``
        takes them. A 64 KiB segment then costs the engine no checksum at all, where
        completing it and verifying it again cost two passes and a copy."""
        out: list = []
        fd, size, header = self.fd, self._read_size, self._header
        read = os.read
        if not header:
            size = max(self.mtu, 1500)          # (see _open: no more can come)
            while len(out) < limit:
                try:
                    out.append(read(fd, size))
                except BlockingIOError:
                    break
                except InterruptedError:
                    continue
            if verified is not None:
                verified += [False] * len(out)
            self.stats["read"] += len(out)
            return out
        gso = 0
        while len(out) < limit:
            try:
                data = read(fd, size)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            if len(data) <= VNET_HDR_LEN:
                continue
            if data[1] != GSO_NONE:
                gso += 1
            if verified is not None and data[0] & VIRTIO_NET_HDR_F_NEEDS_CSUM:
                out.append(memoryview(data)[VNET_HDR_LEN:])
                verified.append(True)
                continue
            packet = self._from_vnet(data)
            if packet is not None:
                out.append(packet)
                if verified is not None:
                    verified.append(False)
        stats = self.stats
        stats["read"] += len(out)
        stats["gso_read"] += gso
        return out

    def _from_vnet(self, data: bytes):
        """The packet behind a virtio_net_hdr, its TCP checksum completed when the kernel left
        it partial (a CHECKSUM_PARTIAL skb: the stack trusts its own packets)."""
        if len(data) <= VNET_HDR_LEN:
            return None
        if not data[0] & VIRTIO_NET_HDR_F_NEEDS_CSUM:
            return memoryview(data)[VNET_HDR_LEN:]
        _, _, _, _, start, offset = _VNET.unpack_from(data)
        packet = bytearray(memoryview(data)[VNET_HDR_LEN:])
        where = start + offset
        if where + 2 > len(packet):
            return None
        try:
            checksum = pk.tcp_checksum(packet)
        except PacketError:                      # not TCP, or cut: the engine drops it
            return packet
        packet[where:where + 2] = checksum.to_bytes(2, "big")
        self.stats["checksums_completed"] += 1
        return packet

    def write(self, packet, partial: bool = False) -> None:
        """One packet to the kernel (a GSO segment when larger than the MTU, with offload):
        bytes, or a (headers, payload) tuple as ``Endpoint.packets_to_write`` gives, written
        with one writev (the payload is not copied here); ``partial``: write_batch's."""
        self.write_batch((packet,), partial)

    @property
    def completes_checksums(self) -> bool:
        """Whether the device takes segments whose TCP checksum it must complete (offload:
        ``write_batch(partial=True)``), so that an engine need not sum them
        (``Endpoint.checksum_offload``)."""
        return bool(self._header)

    def write_batch(self, packets, partial: bool = False) -> None:
        """``write`` each of ``packets`` (one loop: a TUN write takes one packet, so the
        saving is Python's per call; the kernel's own receive path runs in each write).
        ``partial``: the (headers, payload) tuples' TCP checksum fields hold the
        pseudo-header sum only (``Endpoint.checksum_offload``); they go with
        VIRTIO_NET_HDR_F_NEEDS_CSUM, for the kernel to complete or, delivering them locally,
        to take as CHECKSUM_PARTIAL, unverified as its own (only with offload)."""
        if not packets:
            return
        fd, mtu, header = self.fd, self.mtu, self._header
        if partial and not header:
            raise ValueError("partial checksums need a device with offload (its virtio header)")
        writev, write, plain = os.writev, os.write, _PLAIN
        written = gso = dropped = 0
        for packet in packets:
            try:
                if type(packet) is tuple:              # (headers, payload): one writev
                    head, body = packet
                    if not header:
                        writev(fd, packet)
                    elif partial:
                        writev(fd, (self._partial_header(head, len(head) + len(body)), head,
                                    body))
                        gso += len(head) + len(body) > mtu
                    elif len(head) + len(body) > mtu:
                        writev(fd, (self._gso_header(head), head, body))
                        gso += 1
                    else:
                        writev(fd, (plain, head, body))
                elif not header:
                    write(fd, packet)
                elif len(packet) > mtu:
                    writev(fd, (self._gso_header(packet), packet))
                    gso += 1
                else:
                    writev(fd, (plain, packet))
                written += 1
            except BlockingIOError:
                dropped += 1                       # as a full NIC queue drops: TCP recovers
            except OSError as exc:
                if exc.errno not in (errno.EINVAL, errno.EIO, errno.EMSGSIZE):
                    self._count(written, gso, dropped)
                    raise
                dropped += 1                       # the kernel refused this one packet
        self._count(written, gso, dropped)

    def _count(self, written: int, gso: int, dropped: int) -> None:
        stats = self.stats
        stats["written"] += written
        stats["gso_written"] += gso
        stats["dropped_write"] += dropped

    def _gso_header(self, packet) -> bytes:
        """virtio_net_hdr for a TCP segment the kernel may cut at ``gso_size`` bytes of
        payload (the checksum is complete, so no NEEDS_CSUM: the kernel verifies it, or
        recomputes it per piece when it segments). ``packet``: the segment, or its headers."""
        if packet[0] >> 4 == 4:
            ip_len, gso_type = (packet[0] & 0x0F) * 4, GSO_TCPV4
        else:
            ip_len, gso_type = 40, GSO_TCPV6
        tcp_len = (packet[ip_len + 12] >> 4) * 4
        headers = ip_len + tcp_len
        return _VNET.pack(0, gso_type, headers, self.mtu - headers, 0, 0)

    def _partial_header(self, head, size: int) -> bytes:
        """virtio_net_hdr for a TCP segment of ``size`` bytes whose checksum the kernel
        completes from ``csum_start`` (the TCP header) over the rest, the field at
        ``csum_offset`` holding the pseudo-header sum (NEEDS_CSUM); a GSO one beyond the MTU."""
        if head[0] >> 4 == 4:
            ip_len, gso_type = (head[0] & 0x0F) * 4, GSO_TCPV4
        else:
            ip_len, gso_type = 40, GSO_TCPV6
        if size <= self.mtu:
            return _VNET.pack(VIRTIO_NET_HDR_F_NEEDS_CSUM, GSO_NONE, 0, 0, ip_len, 16)
        headers = ip_len + (head[ip_len + 12] >> 4) * 4
        return _VNET.pack(VIRTIO_NET_HDR_F_NEEDS_CSUM, gso_type, headers, self.mtu - headers,
                          ip_len, 16)

    def close(self) -> None:
        """Close the descriptor: the device goes away with it, unless it is persistent
        (idempotent)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    @classmethod
    def remove(cls, name: str, netns: str | None = None) -> None:
        """Delete the persistent device ``name`` (in ``netns``); TunError if there is none."""
        cls._ip((["-n", netns] if netns is not None else []) + ["link", "del", "dev", name])

    def __enter__(self) -> TunDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DeviceWriter:
    """Large batches of packets written to a TunDevice by a thread of its own, in order.

    A write to a TUN device runs the kernel's receive of that packet in the writer's thread
    (``tun_get_user``: the copy, TCP and MPTCP receive, waking the reader), about a third of
    the userspace proxy's time in a bulk transfer. ``os.writev`` lets go of the interpreter
    lock while the kernel works, so a second thread writing the batches lets the engine build
    the next ones meanwhile, on the other core.

    A batch smaller than ``INLINE_BYTES`` (ACKs, a handshake, a short reply) is written at
    once by the caller when the thread has nothing queued: no hand-off, no latency added to
    short exchanges. A batch is never written before one queued ahead of it (one thread, one
    queue: the kernel sees the packets in the engine's order). ``close()`` writes what is
    queued and ends the thread; the device stays open (its owner closes it). Should the
    thread fail otherwise than by the device's OSError (a bug), what was queued is dropped,
    nobody is left waiting for room, and the next ``write_batch`` or ``close`` raises
    RuntimeError from that failure.
    """

    INLINE_BYTES = 16 << 10
    # the most bytes queued for the thread: a caller that would queue more waits for it (the
    # engine holds what it sends until acknowledged anyway; packets queued without a bound
    # were that much again, and a proxy with many slow readers grew by 100 MiB)
    MAX_QUEUED_BYTES = 1 << 20

    def __init__(self, device: TunDevice, partial: bool = False) -> None:
        self.device = device
        self.partial = partial                 # write_batch's, for every batch
        self._queue: collections.deque = collections.deque()
        self._queued_bytes = 0
        self._busy = False                     # the thread is writing a batch
        self._closing = False
        self._wake = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None     # started at the first large batch
        self._failure: BaseException | None = None       # what ended the thread, if not close

    def write_batch(self, packets) -> None:
        if not packets:
            return
        size = sum(map(packet_size, packets))
        with self._wake:
            self._raise_failure()
            idle = not self._busy and not self._queue
            if not (idle and size < self.INLINE_BYTES):
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, daemon=True,
                                                    name="tun-writer")
                    self._thread.start()
                while self._queued_bytes > self.MAX_QUEUED_BYTES and self._queue:
                    self._wake.wait()          # the thread notifies as it takes a batch
                self._raise_failure()          # (or as it fails)
                self._queue.append((packets, size))
                self._queued_bytes += size
                self._wake.notify_all()
                return
        self._write(packets)                   # (the thread is idle: nothing overtaken)

    def _write(self, packets) -> None:
        if self.partial:                       # (partial only for a TunDevice with offload)
            self.device.write_batch(packets, True)
        else:
            self.device.write_batch(packets)

    def close(self) -> None:
        """Write what is queued, then end the thread (idempotent)."""
        with self._wake:
            self._closing = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._wake:
            self._raise_failure()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise RuntimeError("the TUN device's writer thread failed") from self._failure

    def _run(self) -> None:
        wake, queue = self._wake, self._queue
        while True:
            with wake:
                self._busy = False
                while not queue:
                    if self._closing:
                        return
                    wake.wait()
                batch, size = queue.popleft()
                self._queued_bytes -= size
                self._busy = True
                wake.notify_all()              # a caller waiting for room
            try:
                self._write(batch)
            except OSError:                    # (the device went away under us: what is
                with wake:                     # left has nowhere to go)
                    queue.clear()
                    self._queued_bytes = 0
                    wake.notify_all()
            except BaseException as exc:       # a bug: said to the callers, none left waiting
                with wake:
                    self._failure = exc
                    queue.clear()
                    self._queued_bytes = 0
                    self._busy = False
                    wake.notify_all()
                return


def kernel_endpoints_on(device: str, netns: str | None = None) -> list[str]:
    """The addresses of the kernel's MPTCP endpoints bound to ``device`` (``ip mptcp endpoint
    show``), in ``netns``: what stops working when a device of that name goes away and comes
    back as another (the endpoint keeps the old interface index). [] when there are none or
    iproute2 cannot say."""
    command = ["ip"] + (["-n", netns] if netns is not None else []) + ["mptcp", "endpoint",
                                                                       "show"]
    try:
        shown = subprocess.run(command, capture_output=True, text=True).stdout
    except FileNotFoundError:
        return []
    return [line.split()[0] for line in shown.splitlines()
            if f" dev {device} " in f" {line} " and line.split()]


def write_packets(device, packets) -> None:
    """``packets`` to ``device``: a TunDevice's write_batch, else its write() once each (any
    device with write(), a test's pipe)."""
    if isinstance(device, TunDevice):
        device.write_batch(packets)
    else:
        write = device.write
        for packet in packets:
            write(packet if type(packet) is not tuple else b"".join(packet))


def packet_size(packet) -> int:
    """The length of a packet as ``Endpoint.packets_to_write`` gives it: bytes, or a
    (headers, payload) tuple."""
    return len(packet) if type(packet) is not tuple else len(packet[0]) + len(packet[1])
