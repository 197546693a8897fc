"""What the Convert proxy's halves (RFC 8803) decide the same way on either engine: the
server half's verdict on a Convert message (where to connect, or which Error TLV to answer),
the Error TLV for a failed connect, the SOCKS5 reply for an Error TLV, the original
destination of a redirected or diverted connection (and the transparent listener's socket
option that lets ``tproxy`` divert to it), and the answer to a Connect TLV once the server
half has connected: the Extended TCP Header TLV with the destination's SYN+ACK options, as far
as Linux lets a socket see them (``synack_options``). No data are read or written here: the kernel
engine's halves (``convert_proxy.py``, blocking sockets on threads) and the userspace
engine's (``convert_aio.py``, asyncio streams) each talk to the network their own way and
ask this module what to say.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
import sys
from dataclasses import dataclass
from typing import Callable

from ..errors import ConvertError
from ..wire import convert
from . import socks5

__all__ = ["MPTCP_KIND", "DRAIN_LIMIT", "Verdict", "judge", "error_for", "bad_message_error",
           "socks_reply_for", "refusal_for_answer", "original_destination", "make_transparent",
           "made_straight_here", "is_local",
           "same_endpoint", "option_kinds", "SynAck", "synack", "synack_options",
           "connected_answer"]

MPTCP_KIND = 30             # the TCP option kind the server half supports (RFC 8684)
DRAIN_LIMIT = 64 << 10      # bytes read and dropped after an Error, so the close is a FIN
SO_ORIGINAL_DST = 80        # linux/netfilter_ipv4.h (IP6T_SO_ORIGINAL_DST is the same number)
IP_TRANSPARENT = 19         # linux/in.h
IPV6_TRANSPARENT = 75       # linux/in6.h
TCP_REPAIR = 19             # linux/tcp.h, with its values TCP_REPAIR_ON and TCP_REPAIR_OFF_NO_WP
TCP_REPAIR_ON, TCP_REPAIR_OFF, TCP_REPAIR_OFF_NO_WP = 1, 0, -1
TCPI_OPT_TIMESTAMPS, TCPI_OPT_SACK, TCPI_OPT_WSCALE = 1, 2, 4     # struct tcp_info's options
TIMESTAMPS_SPACE = 12       # what Linux takes off the MSS for the Timestamps option (NOPs in)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def error_for(exc: BaseException) -> convert.Error:
    """The Error TLV (RFC 8803) for a failed connect to the destination."""
    code = getattr(exc, "errno", None)
    if isinstance(exc, (socket.timeout, TimeoutError)) or code == errno.ETIMEDOUT:
        return convert.Error(convert.NETWORK_FAILURE)
    if code in (errno.ECONNREFUSED, errno.ECONNRESET):
        return convert.Error(convert.CONNECTION_RESET)
    if code == errno.ENETUNREACH:                        # ICMP code 0: net unreachable
        return convert.Error(convert.DESTINATION_UNREACHABLE, b"\x00")
    if code == errno.EHOSTUNREACH:                       # code 1: host unreachable
        return convert.Error(convert.DESTINATION_UNREACHABLE, b"\x01")
    if code in (errno.EACCES, errno.EPERM):              # code 13: administratively prohibited
        return convert.Error(convert.DESTINATION_UNREACHABLE, b"\x0d")
    return convert.Error(convert.NETWORK_FAILURE)


def bad_message_error(exc: ConvertError) -> convert.Error:
    """The Error TLV answering a message the codec refused (Unsupported Version carries the
    version this converter speaks)."""
    value = bytes((convert.VERSION,)) if exc.code == convert.UNSUPPORTED_VERSION else b"\x00"
    return convert.Error(exc.code, value)


def socks_reply_for(error: convert.Error) -> int:
    """The SOCKS5 REP (RFC 1928 §6) for the server half's Error TLV."""
    if error.code == convert.CONNECTION_RESET:
        return socks5.CONNECTION_REFUSED
    if error.code == convert.DESTINATION_UNREACHABLE:
        return socks5.NETWORK_UNREACHABLE if error.value[:1] == b"\x00" else \
            socks5.HOST_UNREACHABLE
    if error.code == convert.NOT_AUTHORIZED:
        return socks5.NOT_ALLOWED
    return socks5.GENERAL_FAILURE


def refusal_for_answer(answer: convert.Message | None) -> tuple[int, str] | None:
    """The client half's view of the server half's answer: None when it connected (no Error
    TLV), else the SOCKS5 REP to give the client and why (the answer's Error TLV, or the
    server half closing without one)."""
    if answer is None:
        return socks5.GENERAL_FAILURE, "the server half closed"
    failure = answer.first(convert.Error)
    if isinstance(failure, convert.Error):
        return socks_reply_for(failure), f"Convert error {failure.code}, {failure.name}"
    return None


@dataclass(frozen=True)
class Verdict:
    """The server half's decision on a Convert message: connect to ``target`` (a Connect
    TLV), or send ``answer`` and hang up; ``error`` (the Error TLV ``answer`` holds) with
    ``why`` for the log when it refuses. ``where``: the destination as text ("?" unknown)."""
    where: str
    target: convert.Connect | None = None
    answer: bytes | None = None
    error: convert.Error | None = None
    why: str = ""


def _refused(where: str, error: convert.Error, why: str) -> Verdict:
    return Verdict(where, answer=convert.encode([error]), error=error, why=why)


def judge(message: convert.Message, *, listen_port: int,
          allowed: list[ipaddress.IPv4Network | ipaddress.IPv6Network],
          is_self: Callable[[Address], bool], endpoint: Callable[[tuple], str]) -> Verdict:
    """What the server half does with ``message``: an unknown TLV is Unsupported Message, an
    Info TLV alone is answered with Supported TCP Extensions (MPTCP), a message without a
    Connect TLV is Malformed; a Connect with TCP options is Unsupported TCP Option (the
    kinds); the server half's own listener (``listen_port`` on an address ``is_self``
    says is this host's), anything outside ``allowed``, or without ``allowed`` a loopback or
    unspecified address, is Not Authorized. Else: connect to the Connect TLV's address."""
    unknown = message.first(convert.Unknown)
    if isinstance(unknown, convert.Unknown):
        return _refused("?", convert.Error(convert.UNSUPPORTED_MESSAGE),
                        f"TLV type {unknown.type}")
    target = message.first(convert.Connect)
    if not isinstance(target, convert.Connect):
        if message.first(convert.Info) is not None:         # what this converter supports
            return Verdict("?", answer=convert.encode(
                [convert.SupportedTcpExtensions((MPTCP_KIND,))]))
        return _refused("?", convert.Error(convert.MALFORMED_MESSAGE), "no Connect TLV")
    where = endpoint((str(target.address), target.port))
    if target.options:
        value = bytes(option_kinds(target.options)) or b"\x00"     # the kinds refused
        value += b"\x00" * ((1 - len(value)) % 4)
        return _refused(where, convert.Error(convert.UNSUPPORTED_TCP_OPTION, value),
                        "TCP options in the Connect TLV are not supported")
    if target.port == listen_port and is_self(target.address):
        return _refused(where, convert.Error(convert.NOT_AUTHORIZED),
                        "this server half itself (a loop)")
    if allowed and not any(target.address in n for n in allowed):
        return _refused(where, convert.Error(convert.NOT_AUTHORIZED), "outside --allow-to")
    if not allowed and (target.address.is_loopback or target.address.is_unspecified):
        # this host's own services are not for whoever reaches the server half, unless
        # --allow-to names them
        return _refused(where, convert.Error(convert.NOT_AUTHORIZED),
                        "this host's loopback (allow it with --allow-to)")
    return Verdict(where, target=target)


def original_destination(sock) -> tuple[str, int]:
    """Where a connection sent to the transparent front was going. Redirected by netfilter
    (nftables ``redirect``, iptables REDIRECT/DNAT): SO_ORIGINAL_DST (IPv4, also on a
    dual-stack listener's IPv4-mapped connection) or IP6T_SO_ORIGINAL_DST (IPv6), the
    destination conntrack saw before the rewrite. Diverted by ``tproxy`` (nftables, iptables
    TPROXY, with the listener transparent: ``make_transparent``): nothing was rewritten, so
    the connection's own local address is where it was going; conntrack knows it too where it
    tracks the connection, and where it does not (ENOENT) the local address is taken. A
    connection made straight to the listener gives the listener itself (the caller refuses
    that loop). ``sock``: a socket (or asyncio's TransportSocket)."""
    try:
        return _conntrack_destination(sock)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise
    host, port = sock.getsockname()[:2]
    address = ipaddress.ip_address(host)
    if address.version == 6 and address.ipv4_mapped:
        return str(address.ipv4_mapped), port
    return str(address), port


def make_transparent(sock) -> bool:
    """Let a listener take connections ``tproxy`` diverts to it, addressed to anyone
    (IP_TRANSPARENT / IPV6_TRANSPARENT, which need CAP_NET_ADMIN): False where it may not
    (``redirect`` still works then)."""
    try:
        if sock.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_TRANSPARENT, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IP, IP_TRANSPARENT, 1)
    except OSError:
        return False
    return True


def _conntrack_destination(sock) -> tuple[str, int]:
    peer = sock.getpeername()
    if sock.family == socket.AF_INET6 and not ipaddress.IPv6Address(peer[0]).ipv4_mapped:
        raw = sock.getsockopt(socket.IPPROTO_IPV6, SO_ORIGINAL_DST, 28)    # sockaddr_in6
        port, address = struct.unpack_from("!H", raw, 2)[0], raw[8:24]
        return str(ipaddress.IPv6Address(address)), port
    raw = sock.getsockopt(socket.IPPROTO_IP, SO_ORIGINAL_DST, 16)          # sockaddr_in
    port, address = struct.unpack_from("!H", raw, 2)[0], raw[4:8]
    return str(ipaddress.IPv4Address(address)), port


def is_local(address: Address) -> bool:
    """Whether ``address`` is one of this host's (in this namespace): one can bind to it."""
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((str(address), 0))
    except OSError:
        return False
    return True


def same_endpoint(a, b) -> bool:
    """Whether two (address, port, ...) name one endpoint (an IPv4-mapped IPv6 address is the
    IPv4 address it maps)."""
    def plain(address):
        ip = ipaddress.ip_address(address.split("%")[0])
        return ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped \
            else ip
    return a[1] == b[1] and plain(a[0]) == plain(b[0])


def made_straight_here(destination, local) -> bool:
    """Whether a connection to the transparent front, of original ``destination`` and with
    ``local`` as its own address, was made straight to the front: it would loop if carried.
    Redirected, its destination is elsewhere; diverted by tproxy, its own address is its
    destination but not one of this host's."""
    return same_endpoint(destination, local) and \
        is_local(ipaddress.ip_address(str(destination[0]).split("%")[0]))


def option_kinds(options: bytes) -> list[int]:
    """The kinds of the TCP options in ``options`` (RFC 9293 §3.1: EOL and NOP are one byte,
    every other kind has a length byte), without EOL and NOP; a malformed area ends the walk."""
    kinds: list[int] = []
    at = 0
    while at < len(options):
        kind = options[at]
        if kind == 0:
            break
        if kind == 1:
            at += 1
            continue
        kinds.append(kind)
        if at + 1 >= len(options) or options[at + 1] < 2:
            break
        at += options[at + 1]
    return kinds


# ------------------------------------------------------------- the answer to a Connect TLV
#
# RFC 8803 §4.2 (the Extended TCP Header TLV): the converter gives the client the TCP options
# of the SYN+ACK the destination answered its SYN with, after two reserved bytes, and only in
# answer to a Connect TLV. No socket API returns a received SYN+ACK's options: what follows
# is a reconstruction from what Linux keeps of them on the connected socket, not a copy of the
# segment. (A copy would need the segment itself: a packet capture, or a BPF sock_ops program
# parsing the SYN+ACK's header options, neither of which a proxy's socket has.)


@dataclass(frozen=True)
class SynAck:
    """What the server half's socket says of the destination's SYN+ACK options: ``mss``, its
    MSS option, ``mss_exact`` whether that is the option's own value (read in repair mode)
    or the MSS this socket sends with, the timestamp option's bytes added back; ``sack``,
    SACK-permitted; ``window_scale``, its Window Scale shift (None: no Window Scale option);
    ``timestamps``, whether it carried a Timestamps option (not reconstructed: see
    ``options``)."""
    mss: int
    mss_exact: bool
    sack: bool
    window_scale: int | None
    timestamps: bool

    def options(self) -> bytes:
        """A well-formed TCP option area, in whole 32-bit words, laid out as Linux lays its
        own SYN+ACK without timestamps: MSS (kind 2), NOP NOP SACK-permitted (kind 4), NOP
        Window Scale (kind 3). The Timestamps option (kind 8) is left out even when the
        destination sent one: its TSval is the destination's clock and its TSecr echoes the
        SYN's, values the kernel keeps but no socket option returns, and made-up ones would
        misstate the segment."""
        out = b""
        if self.mss:
            out += struct.pack("!BBH", 2, 4, min(self.mss, 0xFFFF))
        if self.sack:
            out += bytes((1, 1, 4, 2))
        if self.window_scale is not None:
            out += bytes((1, 3, 3, self.window_scale))
        return out


def synack(sock) -> SynAck | None:
    """What the connected kernel TCP socket ``sock`` (a socket, or asyncio's TransportSocket:
    the server half's connection to the destination on either engine) says of the
    destination's SYN+ACK, None when it says nothing (not a connected TCP socket).

    From TCP_INFO (struct tcp_info, linux/tcp.h): ``tcpi_options`` TCPI_OPT_SACK (the
    SYN+ACK was SACK-permitted, and our SYN too), TCPI_OPT_WSCALE (both sent Window Scale),
    TCPI_OPT_TIMESTAMPS (both sent Timestamps); ``tcpi_snd_wscale``, the destination's shift
    (the low 4 bits of the byte it shares with ``tcpi_rcv_wscale`` where bit fields start at
    the low end, as on little-endian Linux; the high 4 on big-endian). An option the SYN
    carried and the SYN+ACK did not, or the other way round, is off: Linux keeps only what
    both agreed, so an option this host did not offer (its own sysctls) never shows.

    The MSS option: in repair mode (TCP_REPAIR, which needs CAP_NET_ADMIN), TCP_MAXSEG
    returns the destination's MSS option as received (``rx_opt.mss_clamp``, lowered only by
    a TCP_MAXSEG set on this socket before connecting, which the halves do not set; when the
    SYN+ACK had none, the kernel's default, 536, as if it had said 536). The socket goes into
    repair mode and out of
    it (without the window probe) before anything is sent on it, SO_REUSEADDR as it was.
    Where repair mode is refused: ``tcpi_snd_mss`` (what TCP_MAXSEG says out of repair mode)
    with the Timestamps option's 12 bytes added back when timestamps are on, the MSS this
    socket sends with: the destination's option unless the path's MTU, or half the largest
    window it announced, is smaller (``mss_exact`` False)."""
    if sock is None:
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 32)
    except OSError:
        return None
    if len(info) < 20:
        return None
    options, scales = info[5], info[6]
    snd_mss = struct.unpack_from("=I", info, 16)[0]
    snd_wscale = scales & 0x0F if sys.byteorder == "little" else scales >> 4
    timestamps = bool(options & TCPI_OPT_TIMESTAMPS)
    mss = _mss_option(sock)
    exact = mss is not None
    if mss is None:
        mss = snd_mss + (TIMESTAMPS_SPACE if timestamps and snd_mss else 0)
    return SynAck(mss=mss, mss_exact=exact, sack=bool(options & TCPI_OPT_SACK),
                  window_scale=snd_wscale if options & TCPI_OPT_WSCALE else None,
                  timestamps=timestamps)


def _mss_option(sock) -> int | None:
    """The destination's MSS option as the socket received it (repair mode's TCP_MAXSEG),
    None where repair mode is refused (no CAP_NET_ADMIN)."""
    try:
        reuse = sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        sock.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, TCP_REPAIR_ON)
    except OSError:
        return None
    try:
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG)
    except OSError:
        return None
    finally:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, TCP_REPAIR_OFF_NO_WP)
        except OSError:             # (a kernel without it: out, with a window probe)
            sock.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, TCP_REPAIR_OFF)
        if reuse:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, reuse)


def synack_options(sock) -> bytes:
    """The destination's SYN+ACK options as a TCP option area (``SynAck.options``), as far as
    the connected socket ``sock`` shows them; empty when it shows nothing."""
    seen = synack(sock)
    return seen.options() if seen is not None else b""


def connected_answer(sock) -> bytes:
    """The server half's answer to a Connect TLV once it has connected to the destination
    (``sock``, its kernel TCP socket there): the Convert fixed header with an Extended TCP
    Header TLV carrying ``synack_options`` (RFC 8803 §4.2); the fixed header alone when the
    socket shows nothing (an empty TLV would say the SYN+ACK had no options, which is not
    known then)."""
    options = synack_options(sock)
    return convert.encode([convert.ExtendedTcpHeader(options)] if options else [])
