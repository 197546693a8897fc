"""TCP Fast Open (RFC 7413) for MPTCP v1 connections, as RFC 8684 Appendix B and Linux 6.x do it.

With ``Config.fastopen`` an endpoint is both sides of TFO:

* a client asks a server for a cookie in its first SYN (the option, kind 34, empty), keeps
  what the SYN/ACK brings per server address (``ServerCache``), and from then on sends the
  cookie and up to an MSS of the application's first bytes in the MP_CAPABLE SYN;
* a server answers a cookie request with a cookie (``cookies.FastOpenCookies``: a MAC of the
  client's address under a secret, nothing stored), and takes the data of a SYN whose cookie
  is valid: the application gets them at once, before the handshake completes.

The data of a SYN are not part of the data sequence space (RFC 8684 App. B.2, errata 6609;
Linux: mptcp_fastopen_subflow_synack_set_params puts them before the first DSN): the SYN with
MP_CAPABLE still takes the IDSN, the first byte after the SYN's data is IDSN + 1, and the
subflow sequence numbers that DSS mappings carry count from after them too (Linux's
ssn_offset). The subflow shifts its ISN (client) or its peer's ISN (server) by the bytes taken,
so that relative sequence 1 is the first byte after them on both sides.

Data the server did not take (no cookie, a wrong or expired one) stay in the client's send
queue and go after the handshake as ordinary mapped data; a SYN with data that goes unanswered
is sent again without data and without the option (Linux: "Exclude Fast Open option for SYN
retries"), and the server is left alone for a while (RFC 7413 §4.1.3: negative responses are
cached). v0 (RFC 6824) connections never use TFO, as Linux's do not.
"""

from __future__ import annotations

from collections import OrderedDict

from ..wire._segment_common import TCPOPT_FASTOPEN
from .cookies import FastOpenCookies

__all__ = ["FastOpen", "ServerCache", "Handshake", "MAX_SERVERS", "MAX_SYN_COOKIE",
           "TCPOPT_FASTOPEN"]

MAX_SERVERS = 1024          # servers a client remembers (Linux's tcp_metrics is bounded too)
MAX_SYN_COOKIE = 14         # the longest cookie that fits our SYN: MSS, SACK-permitted,
                            # timestamps, window scale and MP_CAPABLE take 24 of 40 bytes
LOSS_BACKOFF = 60.0         # seconds without SYN data after a SYN with data went unanswered,
MAX_LOSS_SHIFT = 6          # doubled per loss in a row (Linux: 60 s << losses), up to 64 min
SYN_OPTIONS_ROOM = 40       # the SYN's data leave room for a full options area (RFC 6691)


class _Server:
    """What a client knows of one server: its cookie and MSS, and its SYN losses."""
    __slots__ = ("cookie", "mss", "losses", "lost_at")

    def __init__(self) -> None:
        self.cookie: bytes | None = None
        self.mss = 536                       # RFC 9293 §3.7.1 until the server says
        self.losses = 0
        self.lost_at = 0.0


class ServerCache:
    """A client's memory of servers by address (RFC 7413 §4.1.3: cookies are cached per
    server IP address), bounded: the least recently used one is forgotten first."""

    def __init__(self, size: int = MAX_SERVERS) -> None:
        self.size = size
        self._servers: OrderedDict[bytes, _Server] = OrderedDict()

    def __len__(self) -> int:
        return len(self._servers)

    def _entry(self, address: bytes) -> _Server:
        entry = self._servers.get(address)
        if entry is None:
            entry = self._servers[address] = _Server()
            if len(self._servers) > self.size:
                self._servers.popitem(last=False)
        else:
            self._servers.move_to_end(address)
        return entry

    def plan(self, address: bytes, now: float) -> tuple[bytes, int] | None:
        """(the option's cookie, the server's MSS) for a SYN to ``address``: b"" asks for a
        cookie; None: no TFO at all, the server's SYNs with data went unanswered lately."""
        entry = self._servers.get(address)
        if entry is None:
            return b"", 536
        self._servers.move_to_end(address)
        if entry.losses and \
                now < entry.lost_at + LOSS_BACKOFF * (1 << min(entry.losses, MAX_LOSS_SHIFT)):
            return None
        return (entry.cookie or b""), entry.mss

    def learned(self, address: bytes, cookie: bytes | None, mss: int | None) -> None:
        """The SYN/ACK of a SYN that carried the option: its cookie (when one that fits our
        SYN) and the server's MSS (RFC 7413 §4.1.3: to size the next SYN's data)."""
        entry = self._entry(address)
        if cookie and len(cookie) <= MAX_SYN_COOKIE:
            entry.cookie = bytes(cookie)
        if mss:
            entry.mss = mss

    def syn_lost(self, address: bytes, now: float) -> None:
        """A SYN with data went unanswered (a middlebox that drops them, or a lost packet)."""
        entry = self._entry(address)
        entry.losses += 1
        entry.lost_at = now

    def data_taken(self, address: bytes) -> None:
        """The server took a SYN's data: the path carries them."""
        entry = self._servers.get(address)
        if entry is not None:
            entry.losses = 0


class FastOpen:
    """An endpoint's TCP Fast Open: the server's ``cookies`` and the client's ``servers``."""

    def __init__(self, secret: bytes | None = None, size: int = MAX_SERVERS) -> None:
        self.cookies = FastOpenCookies(secret)
        self.servers = ServerCache(size)


class Handshake:
    """One connection's TFO state, while it matters (its handshake; kept for ``stats``).

    Attributes:
        option: the cookie our SYN (client) or SYN/ACK (server) carries in the option, b""
            for a cookie request, None for no option.
        data: client: a copy of the bytes our SYN carries, until its SYN/ACK (they stay
            queued until it says how many the server took).
        taken: bytes of the SYN's data the server took.
        early: server: the application was told of the connection at the SYN.
    """
    __slots__ = ("option", "data", "taken", "early")

    def __init__(self, option: bytes | None = None, data: bytes = b"") -> None:
        self.option = option
        self.data = data
        self.taken = 0
        self.early = False

    def syn_data_room(self, own_mss: int, server_mss: int) -> int:
        """Bytes a SYN may carry: an MSS (the smaller of ours and the server's) less a full
        options area, so that the SYN is never larger than a full-sized segment."""
        return max(0, min(own_mss, server_mss) - SYN_OPTIONS_ROOM)
