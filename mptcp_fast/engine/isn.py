"""Initial sequence numbers (RFC 6528 §3): ISN = M + F(local address, local port, remote address,
remote port, secret key), where M is a timer that ticks every 4 microseconds and F a keyed
hash (here the leftmost 32 bits of HMAC-SHA-256 with a per-endpoint random secret, as the RFC
suggests a keyed cryptographic hash). The same secret keys each 4-tuple's timestamp clock
(``ts_offset``)."""

from __future__ import annotations

from .. import _check
from ..wire import crypto
from .randomness import RandomSource

__all__ = ["IsnGenerator"]


class IsnGenerator:
    """One per endpoint: ``isn(local, local_port, remote, remote_port, now)``, ``now`` in
    seconds on the caller's clock. ``secret`` defaults to 32 bytes from the OS CSPRNG (the
    Endpoint gives one from its RandomSource). Addresses are packed bytes (the engine's) or
    anything ``_check.address`` takes ("198.18.0.1", ipaddress objects)."""

    def __init__(self, secret: bytes | None = None):
        self._secret = RandomSource().secret() if secret is None else bytes(secret)
        if len(self._secret) < 16:
            raise ValueError("the ISN secret must be at least 16 bytes (RFC 6528 §3)")
        # F: HMAC-SHA-256 under the secret, its pads hashed once; one call into the active
        # backend's crypto twin per hash (four per connection set up, and per subflow joined)
        self._f = crypto.tuple_hasher(self._secret)

    def isn(self, local, local_port: int, remote, remote_port: int, now: float) -> int:
        if type(local) is not bytes or type(remote) is not bytes:      # not the engine's own
            local, remote = _check.address("local", local), _check.address("remote", remote)
        m = int(now * 250_000)                   # one tick every 4 microseconds
        return (m + self._f(b"", local, local_port, remote, remote_port)) & 0xFFFFFFFF

    def ts_offset(self, local, local_port: int, remote, remote_port: int) -> int:
        """The offset of the 4-tuple's TSval clock (RFC 7323 §7.1; Linux's secure_tcp_ts_off):
        a keyed hash with no time in it, so every incarnation of a 4-tuple counts on one clock
        and a later one's TSvals are never below an earlier one's (PAWS, RFC 7323 §5)."""
        if type(local) is not bytes or type(remote) is not bytes:      # not the engine's own
            local, remote = _check.address("local", local), _check.address("remote", remote)
        return self._f(b"ts", local, local_port, remote, remote_port)
