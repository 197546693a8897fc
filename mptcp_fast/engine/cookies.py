"""SYN cookies (RFC 4987 §3.6), carrying the MP_CAPABLE state as Linux does with v1, and the
server's TCP Fast Open cookies (RFC 7413 §4.1.2): two values a server derives from a secret
and the peer's address, so that it keeps nothing until the peer proves it owns that address.

When too many handshakes are half open (``Config.syn_backlog``), a listening endpoint answers
a SYN without keeping anything: the SYN/ACK's initial sequence number is a cookie (a keyed
hash of the 4-tuple, the peer's ISN and a 64-second time slot, with the MSS index in its top
bits), the peer's window scale and SACK-permitted ride in the low bits of our timestamp, and
the MP_CAPABLE key is fresh and forgotten. The third ACK brings it all back: its ACK number
less one is the cookie, its timestamp echo the options, and its MP_CAPABLE both keys — the
server takes its own key back from there (Linux: mptcp_subflow_init_cookie_req).
"""

from __future__ import annotations

import hashlib
import hmac

from .randomness import RandomSource

__all__ = ["SynCookies", "FastOpenCookies", "MSS_TABLE"]

MSS_TABLE = (536, 1220, 1440, 1460)       # the MSS values a cookie can carry (2 bits)
SLOT = 64.0                               # seconds per time slot; a cookie lives two slots
MASK32 = 0xFFFFFFFF


class SynCookies:
    def __init__(self, secret: bytes | None = None):
        # 32 bytes from the OS CSPRNG unless given (the Endpoint gives its RandomSource's)
        self._secret = RandomSource().secret() if secret is None else bytes(secret)
        self.made = self.accepted = self.refused = 0

    def _hash(self, local: bytes, lport: int, remote: bytes, rport: int, peer_isn: int,
              slot: int) -> int:
        message = b"".join((local, lport.to_bytes(2, "big"), remote, rport.to_bytes(2, "big"),
                            peer_isn.to_bytes(4, "big"), (slot & 0xFFFFFFFF).to_bytes(4, "big")))
        digest = hmac.new(self._secret, message, hashlib.sha256).digest()
        return int.from_bytes(digest[:4], "big")

    def make(self, local: bytes, lport: int, remote: bytes, rport: int, peer_isn: int,
             mss: int, now: float) -> tuple[int, int]:
        """(our ISN, the MSS it promises): the largest table MSS not above the peer's."""
        index = max((i for i, m in enumerate(MSS_TABLE) if m <= mss), default=0)
        slot = int(now // SLOT)
        cookie = (self._hash(local, lport, remote, rport, peer_isn, slot) & 0x07FFFFFF) \
            | ((slot & 0x7) << 27) | (index << 30)
        self.made += 1
        return cookie, MSS_TABLE[index]

    def check(self, local: bytes, lport: int, remote: bytes, rport: int, peer_isn: int,
              cookie: int, now: float):
        """The MSS of a valid cookie made in this slot or the one before, else None."""
        slot = int(now // SLOT)
        for candidate in (slot, slot - 1):
            if (candidate & 0x7) != (cookie >> 27) & 0x7:
                continue
            if self._hash(local, lport, remote, rport, peer_isn, candidate) & 0x07FFFFFF \
                    == cookie & 0x07FFFFFF:
                self.accepted += 1
                return MSS_TABLE[cookie >> 30]
        self.refused += 1
        return None

    @staticmethod
    def timestamp(now: float, offset: int, wscale, sack: bool) -> int:
        """Our TSval (the clock ``offset`` ahead, as Subflow._tsval counts it: the 4-tuple's
        clock, IsnGenerator.ts_offset, so the cookie's SYN/ACK and the subflow rebuilt from the
        third ACK keep one clock and a peer's PAWS check, RFC 7323 §5, drops nothing) with the
        peer's SYN options in its low 5 bits (Linux's cookie_init_timestamp): window scale
        0..14 (15: none) and SACK-permitted. Never ahead of the clock (32 ms earlier when the
        bits would be), so the subflow's next TSval is not below it."""
        clock = int(now * 1000) + offset
        options = (15 if wscale is None else min(wscale, 14)) | (0x10 if sack else 0)
        ts = clock - (clock & 0x1F) + options
        if ts > clock:
            ts -= 0x20
        return ts & MASK32

    @staticmethod
    def options_from(tsecr: int):
        """(peer window scale or None, SACK-permitted) from the echoed timestamp."""
        wscale = tsecr & 0x0F
        return (None if wscale == 15 else wscale), bool(tsecr & 0x10)


FASTOPEN_COOKIE_SIZE = 8                  # bytes, as Linux's (TCP_FASTOPEN_COOKIE_SIZE)
FASTOPEN_PERIOD = 3600.0                  # seconds per secret period; a cookie lives two


class FastOpenCookies:
    """A server's TCP Fast Open cookies (RFC 7413 §4.1.2): a MAC of the client's and the
    server's addresses (as Linux's tcp_fastopen_cookie_gen_cipher takes both) under a secret
    and the current period, HMAC-SHA256 truncated to 8 bytes. Nothing is stored per client:
    a cookie is checked by making it again. A cookie made in the period before is still
    taken, and answered with a fresh one (as Linux answers a cookie of its backup key), so
    that cookies expire after one to two periods without a flag day."""

    VALID, RENEW = "valid", "renew"

    def __init__(self, secret: bytes | None = None):
        self._secret = RandomSource().secret() if secret is None else bytes(secret)

    def _mac(self, client: bytes, server: bytes, period: int) -> bytes:
        message = b"".join((period.to_bytes(8, "big", signed=True), bytes((len(client),)),
                            client, server))
        return hmac.new(self._secret, message, hashlib.sha256).digest()[:FASTOPEN_COOKIE_SIZE]

    def make(self, client: bytes, server: bytes, now: float) -> bytes:
        """The cookie for ``client`` (its packed address) talking to ``server``."""
        return self._mac(client, server, int(now // FASTOPEN_PERIOD))

    def check(self, client: bytes, server: bytes, cookie: bytes, now: float) -> str | None:
        """VALID (made this period), RENEW (made the period before: take it, send a fresh
        one), or None (forged, expired, or for another address), in constant time."""
        period = int(now // FASTOPEN_PERIOD)
        if len(cookie) == FASTOPEN_COOKIE_SIZE:
            if hmac.compare_digest(self._mac(client, server, period), cookie):
                return self.VALID
            if hmac.compare_digest(self._mac(client, server, period - 1), cookie):
                return self.RENEW
        return None
