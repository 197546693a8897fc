"""The SOCKS5 front end of the client half (``mptcp-fast proxy --front socks5``): the
conversation of RFC 1928 with a local client, on a blocking socket with a timeout
(``negotiate``) or on asyncio streams (``negotiate_stream``): one parser drives both.

    users = load_users("socks-users.txt")       # user:password lines (RFC 1929), or None
    request = negotiate(sock, users)            # Request(kind, host, port): CONNECT only
    ... open the way to request.host ...
    reply(sock, SUCCEEDED, bound=("198.18.0.2", 40000))

Methods (RFC 1928 §3): 0x00 no authentication, 0x02 username/password (RFC 1929); the
proxy offers exactly one of them (``users`` given or not) and answers 0xFF to a client that
offers neither. Commands (§4): CONNECT; BIND and UDP ASSOCIATE are answered with REP 7.
Address types: IPv4 (1), a domain name (3), IPv6 (4); another is answered with REP 8.
Whatever the client sends, only :class:`SocksError` (an MptcpError) or an OSError of the socket
comes out; the client is answered first where RFC 1928 has an answer for it.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import socket
import time
from dataclasses import dataclass
from typing import Generator

from ..errors import MptcpError

__all__ = ["SocksError", "Request", "negotiate", "negotiate_stream", "reply", "reply_bytes",
           "load_users", "remaining", "SUCCEEDED",
           "GENERAL_FAILURE", "NOT_ALLOWED", "NETWORK_UNREACHABLE", "HOST_UNREACHABLE",
           "CONNECTION_REFUSED", "TTL_EXPIRED", "COMMAND_NOT_SUPPORTED",
           "ADDRESS_TYPE_NOT_SUPPORTED"]

VERSION = 5
NO_AUTHENTICATION, USERNAME_PASSWORD, NO_ACCEPTABLE_METHOD = 0x00, 0x02, 0xFF
CONNECT = 1
ATYP_IPV4, ATYP_DOMAIN, ATYP_IPV6 = 1, 3, 4

# REP (RFC 1928 §6)
SUCCEEDED, GENERAL_FAILURE, NOT_ALLOWED, NETWORK_UNREACHABLE, HOST_UNREACHABLE = 0, 1, 2, 3, 4
CONNECTION_REFUSED, TTL_EXPIRED, COMMAND_NOT_SUPPORTED, ADDRESS_TYPE_NOT_SUPPORTED = 5, 6, 7, 8
REPLY_NAMES = {0: "succeeded", 1: "general SOCKS server failure",
               2: "connection not allowed by ruleset", 3: "network unreachable",
               4: "host unreachable", 5: "connection refused", 6: "TTL expired",
               7: "command not supported", 8: "address type not supported"}


class SocksError(MptcpError):
    """The SOCKS client broke RFC 1928/1929, failed authentication, or asked for what this
    proxy does not do; the client was told where the RFC says how (``replied``)."""

    def __init__(self, message: str, replied: bool = False) -> None:
        super().__init__(message)
        self.replied = replied


@dataclass(frozen=True)
class Request:
    """A CONNECT request: ``kind`` "ipv4", "ipv6" or "domain"; ``host`` the address as text
    or the domain name; ``port``."""
    kind: str
    host: str
    port: int


def remaining(sock: socket.socket, deadline: float | None) -> None:
    """Give ``sock``'s next blocking call what is left until ``deadline`` (time.monotonic();
    None: leave its timeout as it is); socket.timeout once nothing is left."""
    if deadline is not None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("timed out")
        sock.settimeout(left)


def _exactly(sock: socket.socket, n: int, deadline: float | None = None) -> bytes:
    """``n`` bytes from ``sock`` before ``deadline``, or SocksError at EOF."""
    data = bytearray()
    while len(data) < n:
        remaining(sock, deadline)
        piece = sock.recv(n - len(data))
        if not piece:
            raise SocksError(f"the client closed after {len(data)} of {n} bytes")
        data += piece
    return bytes(data)


def load_users(path: str) -> dict[str, str]:
    """``user:password`` per line (RFC 1929: each at most 255 bytes of UTF-8); blank lines and
    lines starting with # are skipped. MptcpError for a malformed file."""
    users = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            user, sep, password = line.partition(":")
            if not sep or not user or len(user.encode()) > 255 or len(password.encode()) > 255:
                raise MptcpError(f"{path}:{number}: expected user:password (each 1-255 bytes)")
            users[user] = password
    if not users:
        raise MptcpError(f"{path}: no user:password line")
    return users


# The conversation itself, as a generator both drivers (negotiate: a blocking socket;
# negotiate_stream: asyncio streams) run: it yields an int n ("read exactly n bytes", sent
# back in) or bytes ("send these"), and returns the Request.
Steps = Generator["int | bytes", "bytes | None", Request]


def _read(n: int) -> Generator[int, "bytes | None", bytes]:
    data = yield n
    assert data is not None
    return data


def _authenticate(users: dict[str, str]) -> Generator["int | bytes", "bytes | None", None]:
    """RFC 1929: VER 1, ULEN, UNAME, PLEN, PASSWD; answered VER 1, STATUS (0: success)."""
    version, length = yield from _read(2)
    if version != 1:
        raise SocksError(f"username/password version {version}, expected 1")
    user = yield from _read(length)
    (length,) = yield from _read(1)
    password = yield from _read(length)
    expected = users.get(user.decode("utf-8", "replace"))
    good = expected is not None and hmac.compare_digest(expected.encode(), password)
    yield bytes((1, 0 if good else 1))
    if not good:
        raise SocksError(f"authentication failed for user {user[:64]!r}", replied=True)


def _conversation(users: dict[str, str] | None) -> Steps:
    """The method selection, authentication when ``users`` is given, and the request."""
    version, count = yield from _read(2)
    if version != VERSION:
        raise SocksError(f"SOCKS version {version}, expected 5")
    methods = yield from _read(count)
    wanted = USERNAME_PASSWORD if users is not None else NO_AUTHENTICATION
    if wanted not in methods:
        yield bytes((VERSION, NO_ACCEPTABLE_METHOD))
        raise SocksError(f"no acceptable method among {list(methods)} (this proxy takes "
                         f"{wanted:#04x})", replied=True)
    yield bytes((VERSION, wanted))
    if users is not None:
        yield from _authenticate(users)
    version, command, _, kind = yield from _read(4)
    if version != VERSION:
        raise SocksError(f"SOCKS version {version} in the request, expected 5")
    if kind == ATYP_IPV4:
        request = Request("ipv4", str(ipaddress.IPv4Address((yield from _read(4)))), 0)
    elif kind == ATYP_IPV6:
        request = Request("ipv6", str(ipaddress.IPv6Address((yield from _read(16)))), 0)
    elif kind == ATYP_DOMAIN:
        (length,) = yield from _read(1)
        name = yield from _read(length)
        try:
            text = name.decode("ascii")
        except UnicodeDecodeError:
            text = ""
        if not text or not all(c.isalnum() or c in "-._" for c in text):
            yield reply_bytes(HOST_UNREACHABLE)
            raise SocksError(f"not a host name: {name[:64]!r}", replied=True)
        request = Request("domain", text, 0)
    else:
        yield reply_bytes(ADDRESS_TYPE_NOT_SUPPORTED)
        raise SocksError(f"address type {kind}", replied=True)
    port = int.from_bytes((yield from _read(2)), "big")
    if command != CONNECT:
        yield reply_bytes(COMMAND_NOT_SUPPORTED)
        raise SocksError(f"command {command} (only CONNECT)", replied=True)
    return Request(request.kind, request.host, port)


def negotiate(sock: socket.socket, users: dict[str, str] | None,
              deadline: float | None = None) -> Request:
    """The method selection, authentication when ``users`` is given, and the request, all
    before ``deadline`` (time.monotonic(); None: only the socket's timeout per read)."""
    steps = _conversation(users)
    received: bytes | None = None
    try:
        while True:
            step = steps.send(received)
            if isinstance(step, int):
                received = _exactly(sock, step, deadline)
            else:
                sock.sendall(step)
                received = None
    except StopIteration as done:
        return done.value


async def negotiate_stream(reader: asyncio.StreamReader, writer,
                           users: dict[str, str] | None) -> Request:
    """``negotiate`` on asyncio streams (the caller bounds it in time: asyncio.wait_for).
    Only SocksError or the stream's OSError comes out."""
    steps = _conversation(users)
    received: bytes | None = None
    try:
        while True:
            step = steps.send(received)
            if isinstance(step, int):
                try:
                    received = await reader.readexactly(step)
                except asyncio.IncompleteReadError as exc:
                    raise SocksError(f"the client closed after {len(exc.partial)} of {step} "
                                     "bytes") from None
            else:
                writer.write(step)
                await writer.drain()
                received = None
    except StopIteration as done:
        return done.value


def reply_bytes(code: int, bound: tuple | None = None) -> bytes:
    """The reply (RFC 1928 §6): REP ``code`` and BND.ADDR/BND.PORT (``bound``, an address and
    port of the proxy; 0.0.0.0:0 when None)."""
    host, port = (bound[0], bound[1]) if bound else ("0.0.0.0", 0)
    address = ipaddress.ip_address(host)
    kind = ATYP_IPV4 if address.version == 4 else ATYP_IPV6
    return bytes((VERSION, code, 0, kind)) + address.packed + port.to_bytes(2, "big")


def reply(sock: socket.socket, code: int, bound: tuple | None = None) -> None:
    """Send the reply (``reply_bytes``) on ``sock``."""
    sock.sendall(reply_bytes(code, bound))
