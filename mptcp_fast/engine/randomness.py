"""Where an endpoint's random numbers come from: one source, given to the Endpoint
(``Endpoint(addresses, config, random=...)``) and asked by everything it makes.

What is drawn keeps an off-path attacker out, so by default every draw comes from the
operating system's CSPRNG (``secrets.SystemRandom``): MPTCP keys (RFC 8684 §3.1: their tokens
name connections and key every HMAC, §5), MP_JOIN nonces (§3.2), the secret behind initial
sequence numbers and the timestamp clocks (RFC 6528 §3) unless ``Config.isn_secret`` gives
one, the SYN-cookie secret (RFC 4987 §3.6), the key of a cookie's SYN/ACK, and ephemeral
ports (RFC 6056 §3: hard to guess too).

``RandomSource.seeded(seed)`` draws them all from ``random.Random(seed)`` instead: the same
seed gives the same keys, ISNs, nonces and ports, so a test or a simulation replays exactly.
Never on a real network: whoever knows the seed knows the keys.
"""

from __future__ import annotations

import random as _random
import secrets

from ..wire import crypto

__all__ = ["RandomSource"]


class RandomSource:
    """One endpoint's random numbers (see the module text); ``RandomSource()`` is the
    secure default, ``RandomSource.seeded(seed)`` the reproducible one for tests.

    Args:
        rng: where to draw from, a ``random.Random`` (the operating system's CSPRNG,
            ``secrets.SystemRandom()``, by default).
    """
    __slots__ = ("_rng",)

    def __init__(self, rng: _random.Random | None = None):
        self._rng = secrets.SystemRandom() if rng is None else rng

    @classmethod
    def seeded(cls, seed) -> RandomSource:
        """Deterministic draws from ``random.Random(seed)``: tests and simulations only."""
        return cls(_random.Random(seed))

    @property
    def secure(self) -> bool:
        """Whether the draws come from the operating system's CSPRNG."""
        return isinstance(self._rng, _random.SystemRandom)

    def key(self) -> int:
        """A 64-bit MPTCP key, never zero (RFC 8684 §3.1)."""
        return crypto.generate_key(self._rng.getrandbits)

    def nonce(self) -> int:
        """A 32-bit MP_JOIN nonce (RFC 8684 §3.2)."""
        return self._rng.getrandbits(32)

    def secret(self, size: int = 32) -> bytes:
        """``size`` bytes of key material (the ISN and SYN-cookie secrets)."""
        return self._rng.getrandbits(8 * size).to_bytes(size, "big")

    def port(self, low: int, high: int) -> int:
        """A port in [low, high] (RFC 6056 §3.3.1's random pick)."""
        return self._rng.randint(low, high)

    def below(self, n: int) -> int:
        """A number in [0, n): where a walk of the port range starts (RFC 6056 §3.3.2)."""
        return self._rng.randrange(n)
