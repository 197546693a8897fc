"""Kernel MPTCP sockets for a Python user: make them with a clear error
where MPTCP is off, and read what the kernel knows about a connection.

    from mptcp_fast.net import kernel
    sock = kernel.mptcp_socket()                    # socket(AF_INET, SOCK_STREAM, IPPROTO_MPTCP)
    sock.connect(("127.0.0.1", 5000)); ...
    info = kernel.mptcp_info(sock)                  # MptcpInfo: subflows, token, sequence numbers...
    kernel.subflow_addresses(sock)                  # [(local (address, port), remote (address, port))]
    kernel.subflow_tcp_info(sock)                   # [TcpInfo] of each subflow
    kernel.add_endpoint("198.18.0.1", flags={"subflow", "signal"})   # the in-kernel PM
    kernel.endpoints(); kernel.set_limits(subflows=4, add_addr_accepted=2); kernel.limits()

Layouts from include/uapi/linux/mptcp.h and linux/tcp.h: ``struct mptcp_info`` grew in 5.12,
5.14, 6.5, 6.8 and 6.10, and the kernel writes only the part it knows, so fields it does not
report are None. MPTCP_TCPINFO and MPTCP_SUBFLOW_ADDRS take a ``struct mptcp_subflow_data``
header as input, which Python's ``socket.getsockopt`` cannot pass: libc's getsockopt is called
through ctypes for them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import ipaddress
import os
import socket
import struct
from dataclasses import dataclass

from ..errors import MptcpError

__all__ = ["IPPROTO_MPTCP", "SOL_MPTCP", "KernelMptcpError", "MptcpInfo", "TcpInfo",
           "mptcp_socket", "mptcp_info", "subflow_tcp_info", "subflow_addresses",
           "KernelEndpoint", "endpoints", "add_endpoint", "remove_endpoint", "flush_endpoints",
           "limits", "set_limits"]

IPPROTO_MPTCP = 262
SOL_MPTCP = 284
MPTCP_INFO, MPTCP_TCPINFO, MPTCP_SUBFLOW_ADDRS = 1, 2, 3
MPTCP_INFO_FLAG_FALLBACK = 1 << 0
MPTCP_INFO_FLAG_REMOTE_KEY_RECEIVED = 1 << 1

# struct mptcp_info, native layout (x86_64 and every Linux ABI: natural alignment)
_INFO = struct.Struct("=BBBBBBxxIIQQQBBBxIQQQQB3xIII")          # 96 bytes, up to 6.10
_INFO_FIELDS = ("subflows", "add_addr_signal", "add_addr_accepted", "subflows_max",
                "add_addr_signal_max", "add_addr_accepted_max", "flags", "token", "write_seq",
                "snd_una", "rcv_nxt", "local_addr_used", "local_addr_max", "csum_enabled",
                "retransmits", "bytes_retrans", "bytes_sent", "bytes_received", "bytes_acked",
                "subflows_total", "last_data_sent", "last_data_recv", "last_ack_recv")
# the offset one past each field: the kernel's optlen tells which ones it filled
_INFO_ENDS = (1, 2, 3, 4, 5, 6, 12, 16, 24, 32, 40, 41, 42, 43, 48, 56, 64, 72, 80, 81, 88,
              92, 96)

# struct tcp_info up to tcpi_bytes_received (stable since Linux 4.1)
_TCP = struct.Struct("=BBBBBBBB" + "I" * 24 + "QQQQ")
_SUBFLOW_DATA = struct.Struct("=IIII")                            # struct mptcp_subflow_data
_SOCKADDR_STORAGE = 128


class KernelMptcpError(MptcpError, OSError):
    """Kernel MPTCP is not there or not on, or a getsockopt failed; ``errno`` as OSError's."""


@dataclass(frozen=True)
class MptcpInfo:
    """``struct mptcp_info`` (MPTCP_INFO). Fields a kernel does not report are None."""
    subflows: int
    add_addr_signal: int
    add_addr_accepted: int
    subflows_max: int
    add_addr_signal_max: int
    add_addr_accepted_max: int
    flags: int
    token: int
    write_seq: int
    snd_una: int
    rcv_nxt: int
    local_addr_used: int | None = None
    local_addr_max: int | None = None
    csum_enabled: int | None = None
    retransmits: int | None = None
    bytes_retrans: int | None = None
    bytes_sent: int | None = None
    bytes_received: int | None = None
    bytes_acked: int | None = None
    subflows_total: int | None = None
    last_data_sent: int | None = None
    last_data_recv: int | None = None
    last_ack_recv: int | None = None

    @property
    def fallback(self) -> bool:
        """The connection fell back to TCP (MPTCP_INFO_FLAG_FALLBACK)."""
        return bool(self.flags & MPTCP_INFO_FLAG_FALLBACK)

    @property
    def remote_key_received(self) -> bool:
        return bool(self.flags & MPTCP_INFO_FLAG_REMOTE_KEY_RECEIVED)


@dataclass(frozen=True)
class TcpInfo:
    """The first part of ``struct tcp_info`` of one subflow (times in microseconds)."""
    state: int
    ca_state: int
    retransmits: int
    probes: int
    backoff: int
    options: int
    snd_wscale: int
    rcv_wscale: int
    rto: int
    ato: int
    snd_mss: int
    rcv_mss: int
    unacked: int
    sacked: int
    lost: int
    retrans: int
    last_data_sent: int
    last_ack_sent: int
    last_data_recv: int
    last_ack_recv: int
    pmtu: int
    rcv_ssthresh: int
    rtt: int
    rttvar: int
    snd_ssthresh: int
    snd_cwnd: int
    advmss: int
    reordering: int
    rcv_rtt: int
    rcv_space: int
    total_retrans: int
    pacing_rate: int
    bytes_acked: int
    bytes_received: int


def mptcp_socket(family: int = socket.AF_INET, type: int = socket.SOCK_STREAM) -> socket.socket:
    """A kernel MPTCP socket, or KernelMptcpError saying why there is none."""
    try:
        return socket.socket(family, type, IPPROTO_MPTCP)
    except OSError as exc:
        if exc.errno in (errno.ENOPROTOOPT, errno.EPROTONOSUPPORT, errno.EINVAL):
            raise KernelMptcpError(exc.errno, _why_unavailable()) from None
        raise


def _why_unavailable() -> str:
    try:
        with open("/proc/sys/net/mptcp/enabled") as f:
            if f.read().strip() == "0":
                return ("MPTCP is disabled in this network namespace "
                        "(sysctl net.mptcp.enabled=0; set it to 1)")
    except OSError:
        return "this kernel has no MPTCP (CONFIG_MPTCP, Linux 5.6 or later)"
    return "the kernel refused an MPTCP socket (IPPROTO_MPTCP)"


def mptcp_info(sock: socket.socket) -> MptcpInfo:
    """MPTCP_INFO of a connected (or listening) kernel MPTCP socket."""
    try:
        raw = sock.getsockopt(SOL_MPTCP, MPTCP_INFO, _INFO.size)
    except OSError as exc:
        raise KernelMptcpError(exc.errno, f"MPTCP_INFO: {os.strerror(exc.errno)} "  # type: ignore[arg-type]  # (set by a getsockopt)
                               "(a plain TCP socket, or one that fell back?)") from None
    values = _INFO.unpack(raw.ljust(_INFO.size, b"\0"))
    known = sum(1 for end in _INFO_ENDS if end <= len(raw))
    # (the fields before local_addr_used are in every kernel's struct: never None)
    return MptcpInfo(*[v if i < known else None for i, v in enumerate(values)])  # type: ignore[arg-type]


_libc = None


def _getsockopt_subflows(sock: socket.socket, option: int, element: int, most: int = 64):
    """(elements the kernel wrote, their bytes) of MPTCP_TCPINFO / MPTCP_SUBFLOW_ADDRS."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    size = _SUBFLOW_DATA.size + element * most
    buffer = ctypes.create_string_buffer(size)
    _SUBFLOW_DATA.pack_into(buffer, 0, _SUBFLOW_DATA.size, 0, 0, element)
    length = ctypes.c_uint32(size)
    if _libc.getsockopt(sock.fileno(), SOL_MPTCP, option, buffer, ctypes.byref(length)) != 0:
        code = ctypes.get_errno()
        raise KernelMptcpError(code, f"getsockopt {option}: {os.strerror(code)}")
    _, count, size_kernel, size_user = _SUBFLOW_DATA.unpack_from(buffer, 0)
    count = min(count, most)
    return count, size_user, buffer.raw[_SUBFLOW_DATA.size:_SUBFLOW_DATA.size + count * size_user]


def subflow_tcp_info(sock: socket.socket) -> list[TcpInfo]:
    """MPTCP_TCPINFO: ``struct tcp_info`` of each subflow."""
    count, size_user, raw = _getsockopt_subflows(sock, MPTCP_TCPINFO, _TCP.size)
    out = []
    for i in range(count):
        v = _TCP.unpack_from(raw, i * size_user)
        flags8 = v[:6]                       # tcpi_state .. tcpi_options
        scales = (v[6] & 0x0F, v[6] >> 4)    # tcpi_snd_wscale : 4, tcpi_rcv_wscale : 4
        u32 = v[8:32]                        # tcpi_rto .. tcpi_total_retrans
        u32 = u32[:8] + u32[9:]              # without tcpi_fackets (unused since 4.15)
        pacing, _max_pacing, acked, received = v[32:36]
        out.append(TcpInfo(*flags8, *scales, *u32, pacing, acked, received))  # type: ignore[call-arg]
    return out


def _sockaddr(raw: bytes):
    family = struct.unpack_from("=H", raw, 0)[0]
    if family == socket.AF_INET:
        port = struct.unpack_from("!H", raw, 2)[0]
        return str(ipaddress.IPv4Address(raw[4:8])), port
    if family == socket.AF_INET6:
        port = struct.unpack_from("!H", raw, 2)[0]
        return str(ipaddress.IPv6Address(raw[8:24])), port
    return None


def subflow_addresses(sock: socket.socket) -> list[tuple]:
    """MPTCP_SUBFLOW_ADDRS: (local, remote) (address, port) pairs of each subflow."""
    count, size_user, raw = _getsockopt_subflows(sock, MPTCP_SUBFLOW_ADDRS,
                                                 2 * _SOCKADDR_STORAGE)
    return [(_sockaddr(raw[i * size_user:i * size_user + _SOCKADDR_STORAGE]),
             _sockaddr(raw[i * size_user + _SOCKADDR_STORAGE:(i + 1) * size_user]))
            for i in range(count)]


# ------------------------------------------------------------------------------------------
# the in-kernel path manager over generic netlink ("mptcp_pm"; what `ip mptcp` drives).
# pyroute2 (an optional extra: pip install 'mptcp_fast[kernel]') speaks the netlink: a
# maintained library, and its MPTCP family matches the kernel's attributes one to one.

ENDPOINT_FLAGS = {"signal": 1 << 0, "subflow": 1 << 1, "backup": 1 << 2, "fullmesh": 1 << 3,
                  "implicit": 1 << 4}


@dataclass(frozen=True)
class KernelEndpoint:
    """One endpoint of the in-kernel PM (``ip mptcp endpoint``)."""
    id: int
    address: str
    port: int | None
    flags: frozenset
    ifindex: int | None


def _pm():
    try:
        from pyroute2 import MPTCP
    except ImportError:
        raise KernelMptcpError(errno.ENOPKG, "managing kernel MPTCP endpoints needs pyroute2: "
                               "pip install 'mptcp_fast[kernel]'") from None
    try:
        return MPTCP()
    except Exception as exc:  # noqa: BLE001 — the netlink family is missing: say why
        raise KernelMptcpError(errno.ENOPROTOOPT, f"no MPTCP path manager on netlink: {exc}") \
            from None


def _call(method, *args, **kwargs):
    from pyroute2.netlink.exceptions import NetlinkError
    pm = _pm()
    try:
        return method(pm)(*args, **kwargs)
    except (OSError, NetlinkError) as exc:
        code = exc.errno if isinstance(exc, OSError) else exc.code
        raise KernelMptcpError(code, f"mptcp_pm {args[0]} {kwargs or ''}: "
                               f"{os.strerror(code)}") from None
    finally:
        pm.close()


def endpoints() -> list[KernelEndpoint]:
    """The endpoints of this network namespace's in-kernel PM."""
    out = []
    for msg in _call(lambda pm: pm.endpoint, "show"):
        a = msg.get("MPTCP_PM_ATTR_ADDR")
        flags = a.get("MPTCP_PM_ADDR_ATTR_FLAGS") or 0
        address = a.get("MPTCP_PM_ADDR_ATTR_ADDR4") or a.get("MPTCP_PM_ADDR_ATTR_ADDR6")
        ifindex = a.get("MPTCP_PM_ADDR_ATTR_IF_IDX")
        out.append(KernelEndpoint(a.get("MPTCP_PM_ADDR_ATTR_ID"), address,
                                  a.get("MPTCP_PM_ADDR_ATTR_PORT") or None,
                                  frozenset(n for n, bit in ENDPOINT_FLAGS.items() if flags & bit),
                                  int(ifindex, 16) if isinstance(ifindex, str) else ifindex))
    return out


def add_endpoint(address: str, *, flags=("subflow",), id: int | None = None,
                 port: int | None = None) -> None:
    """``ip mptcp endpoint add ADDRESS [id ID] [port PORT] FLAGS``; flags among signal,
    subflow, backup, fullmesh (the kernel takes a port only on a signal endpoint: EINVAL,
    as a KernelMptcpError, otherwise)."""
    unknown = set(flags) - set(ENDPOINT_FLAGS)
    if unknown:
        raise ValueError(f"unknown endpoint flags {sorted(unknown)}; known: {sorted(ENDPOINT_FLAGS)}")
    packed = ipaddress.ip_address(address)
    kwargs = {"addr4" if packed.version == 4 else "addr6": str(packed),
              "flags": sum(ENDPOINT_FLAGS[f] for f in flags)}
    if id is not None:
        kwargs["id"] = id
    if port is not None:
        kwargs["port"] = port
    _call(lambda pm: pm.endpoint, "add", **kwargs)


def remove_endpoint(id: int) -> None:
    """``ip mptcp endpoint delete id ID``.

    Raises:
        KernelMptcpError: no such endpoint, no pyroute2, or no MPTCP path manager.
    """
    _call(lambda pm: pm.endpoint, "del", id=id)


def flush_endpoints() -> None:
    """``ip mptcp endpoint flush``: remove every endpoint of this namespace's PM.

    Raises:
        KernelMptcpError: no pyroute2, or no MPTCP path manager.
    """
    _call(lambda pm: pm.endpoint, "flush")


def limits() -> tuple[int, int]:
    """(subflows, add_addr_accepted): ``ip mptcp limits show``."""
    (msg,) = _call(lambda pm: pm.limits, "show")
    return msg.get("MPTCP_PM_ATTR_SUBFLOWS"), msg.get("MPTCP_PM_ATTR_RCV_ADD_ADDRS")


def set_limits(subflows: int | None = None, add_addr_accepted: int | None = None) -> None:
    """``ip mptcp limits set [subflows N] [add_addr_accepted N]``: the limits given change,
    the others stay.

    Raises:
        KernelMptcpError: the kernel refused a value (above 8), no pyroute2, or no MPTCP
            path manager.
    """
    kwargs = {k: v for k, v in (("subflows", subflows), ("add_addr_accepted", add_addr_accepted))
              if v is not None}
    if kwargs:
        _call(lambda pm: pm.limits, "set", **kwargs)
