"""Initial sequence numbers (RFC 6528 §3): ISN = M + F(local address, local port, remote address,
remote port, secret key), where M is a timer that ticks every 4 microseconds and F a keyed
hash (here the leftmost 32 bits of HMAC-SHA-256 with a per-endpoint random secret, as the RFC
suggests a keyed cryptographic hash). The same secret keys each 4-tuple's timestamp clock
(``ts_offset``)."""

from __future__ import annotations

import hmac

from .. import _check
from .randomness import RandomSource

__all__ = ["IsnGenerator"]


class IsnGenerator:
    """One per endpoint: ``isn(local, local_port, remote, remote_port, now)``, ``now`` in
    seconds on the caller's clock. ``secret`` defaults to 32 bytes from the OS CSPRNG (the
    Endpoint gives one from its RandomSource)."""

    def __init__(self, secret: bytes | None = None):
        self._secret = RandomSource().secret() if secret is None else bytes(secret)
        if len(self._secret) < 16:
            raise ValueError("the ISN secret must be at least 16 bytes (RFC 6528 §3)")

    def isn(self, local, local_port: int, remote, remote_port: int, now: float) -> int:
        f = self._keyed(b"", local, local_port, remote, remote_port)
        m = int(now * 250_000)                   # one tick every 4 microseconds
        return (m + f) & 0xFFFFFFFF

    def ts_offset(self, local, local_port: int, remote, remote_port: int) -> int:
        """The offset of the 4-tuple's TSval clock (RFC 7323 §7.1; Linux's secure_tcp_ts_off):
        a keyed hash with no time in it, so every incarnation of a 4-tuple counts on one clock
        and a later one's TSvals are never below an earlier one's (PAWS, RFC 7323 §5)."""
        return self._keyed(b"ts", local, local_port, remote, remote_port)

    def _keyed(self, purpose: bytes, local, local_port: int, remote, remote_port: int) -> int:
        message = (purpose + _check.address("local", local)
                   + _check.uint("local_port", local_port, 16).to_bytes(2, "big")
                   + _check.address("remote", remote)
                   + _check.uint("remote_port", remote_port, 16).to_bytes(2, "big"))
        return int.from_bytes(hmac.digest(self._secret, message, "sha256")[:4], "big")  # one C call
