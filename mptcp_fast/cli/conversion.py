"""What the Convert proxy's halves (RFC 8803) decide the same way on either engine: the
server half's verdict on a Convert message (where to connect, or which Error TLV to answer),
the Error TLV for a failed connect, the SOCKS5 reply for an Error TLV, the original
destination of a redirected or diverted connection (and the transparent listener's socket
option that lets ``tproxy`` divert to it). No data are read or written here: the kernel
engine's halves (``convert_proxy.py``, blocking sockets on threads) and the userspace
engine's (``convert_aio.py``, asyncio streams) each talk to the network their own way and
ask this module what to say.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
from dataclasses import dataclass
from typing import Callable

from ..errors import ConvertError
from ..wire import convert
from . import socks5

__all__ = ["MPTCP_KIND", "DRAIN_LIMIT", "Verdict", "judge", "error_for", "bad_message_error",
           "socks_reply_for", "refusal_for_answer", "original_destination", "make_transparent",
           "made_straight_here", "is_local",
           "same_endpoint", "option_kinds"]

MPTCP_KIND = 30             # the TCP option kind the server half supports (RFC 8684)
DRAIN_LIMIT = 64 << 10      # bytes read and dropped after an Error, so the close is a FIN
SO_ORIGINAL_DST = 80        # linux/netfilter_ipv4.h (IP6T_SO_ORIGINAL_DST is the same number)
IP_TRANSPARENT = 19         # linux/in.h
IPV6_TRANSPARENT = 75       # linux/in6.h

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
