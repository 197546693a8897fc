"""Initial sequence numbers (RFC 6528 §3): ISN = M + F(local address, local port, remote address,
remote port, secret key), where M is a timer that ticks every 4 microseconds and F a keyed
hash (here the leftmost 32 bits of HMAC-SHA-256 with a per-endpoint random secret, as the RFC
suggests a keyed cryptographic hash). The same secret keys each 4-tuple's timestamp clock
(``ts_offset``)."""

from __future__ import annotations

import hashlib

from .. import _check
from .randomness import RandomSource

__all__ = ["IsnGenerator"]

_IPAD = bytes(b ^ 0x36 for b in range(256))     # RFC 2104: the key XOR ipad, XOR opad
_OPAD = bytes(b ^ 0x5C for b in range(256))


class IsnGenerator:
    """One per endpoint: ``isn(local, local_port, remote, remote_port, now)``, ``now`` in
    seconds on the caller's clock. ``secret`` defaults to 32 bytes from the OS CSPRNG (the
    Endpoint gives one from its RandomSource)."""

    def __init__(self, secret: bytes | None = None):
        self._secret = RandomSource().secret() if secret is None else bytes(secret)
        if len(self._secret) < 16:
            raise ValueError("the ISN secret must be at least 16 bytes (RFC 6528 §3)")
        # HMAC-SHA-256 (RFC 2104) with the key's pads hashed once: a hash costs two
        # compressions and two copies, not a new HMAC object (four per connection set up)
        key = self._secret if len(self._secret) <= 64 else hashlib.sha256(self._secret).digest()
        key = key.ljust(64, b"\0")
        self._inner = hashlib.sha256(key.translate(_IPAD))
        self._outer = hashlib.sha256(key.translate(_OPAD))

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
        if type(local) is bytes and type(remote) is bytes and len(local) in (4, 16) \
                and len(remote) in (4, 16) and type(local_port) is int \
                and type(remote_port) is int and 0 <= local_port <= 0xFFFF \
                and 0 <= remote_port <= 0xFFFF:     # the engine's own values: packed, checked
            message = (purpose + local + local_port.to_bytes(2, "big") + remote
                       + remote_port.to_bytes(2, "big"))
        else:
            message = (purpose + _check.address("local", local)
                       + _check.uint("local_port", local_port, 16).to_bytes(2, "big")
                       + _check.address("remote", remote)
                       + _check.uint("remote_port", remote_port, 16).to_bytes(2, "big"))
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return int.from_bytes(outer.digest()[:4], "big")
