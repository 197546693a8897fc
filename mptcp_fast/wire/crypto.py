"""MPTCP cryptography: keys, tokens, IDSNs, MP_JOIN and ADD_ADDR HMACs.

Facts: RFC 8684 §3.1 (token = most significant 32 bits of SHA-256(key), IDSN =
least significant 64 bits; the first DSN sent is IDSN + 1), §3.2 (MP_JOIN:
HMAC-SHA256 keyed Key-A||Key-B over R-A||R-B; the SYN/ACK carries the leftmost
64 bits of the responder's HMAC, the third ACK the leftmost 160 bits of the
initiator's), §3.4.1 (ADD_ADDR: rightmost 64 bits of HMAC-SHA256 keyed
sender||receiver over id||address||port, with two zero octets when no port).
RFC 6824 (v0) uses SHA-1 throughout and sends the whole 160-bit HMAC.

ADD_ADDR2 (draft-ietf-mptcp-rfc6824bis-00, IETF-87 slides) follows the only
deployed implementation, the out-of-tree Linux MPTCP (docs/add-addr2.md): the
leftmost 64 bits of HMAC-SHA1 keyed with the sender's key alone, over
id||address, with the port appended only when present. No draft text was
available to confirm it; treat this profile as implementation-derived.

The hashing is a hot path with two twins (pyx/mptcp_fast/wire/_crypto_c.pyx, wire/_crypto_py.py);
this module validates arguments and holds the public types.
"""

from __future__ import annotations

import hashlib
import hmac as _hmac
import os
import secrets
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Callable, Generic, Hashable, TypeVar

from mptcp_fast._lazy import lazy_module

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy_module("numpy")        # imported by the first batch over arrays (_lazy.py)

from .. import _check
from ..errors import MptcpError
from .options import AddAddr, AddAddr2

if TYPE_CHECKING:
    from .._typing import Address

__all__ = [
    "generate_key", "key_token", "key_idsn", "key_token_idsn", "join_hmac",
    "join_synack_hmac", "join_ack_hmac", "verify_join_synack", "verify_join_ack",
    "add_addr_hmac", "add_addr2_hmac", "verify_add_addr", "KeyContext", "TokenTable",
    "TokenTableError", "token_idsn_batch", "join_hmac_batch", "verify_join_synack_batch",
    "verify_join_ack_batch", "add_addr_hmac_batch", "acceleration", "tuple_hasher",
]

SYNACK_HMAC_LEN = 8     # leftmost 64 bits (RFC 8684 §3.2)
ACK_HMAC_LEN = 20       # leftmost 160 bits (v1), the whole SHA-1 HMAC (v0)


class TokenTableError(MptcpError):
    """The token table is full, or no unique token was found within the retry bound."""


# ------------------------------------------------------------------------------------------------
# argument checks (shared by both backends)

_u = _check.uint
MAX_THREADS = 256           # batch helpers split work over at most this many threads


def _nonce(name: str, value) -> int:
    """A 32-bit nonce; the common case (a Python int in range) without a call."""
    if type(value) is int and 0 <= value <= 0xFFFFFFFF:
        return value
    return _check.uint(name, value, 32)


_U64_MAX = (1 << 64) - 1


def _key(name: str, value) -> int:
    """A 64-bit key; the common case (a Python int in range, as the engine's keys are)
    without a call."""
    if type(value) is int and 0 <= value <= _U64_MAX:
        return value
    return _check.uint(name, value, 64)


def _version(version) -> int:
    if type(version) is int and (version == 1 or version == 0):
        return version
    if version not in (0, 1):
        raise ValueError(f"version must be 0 (RFC 6824) or 1 (RFC 8684), not {version!r}")
    return int(version)


def _packed(address) -> bytes:
    return _check.address("address", address)


def _port(port) -> int:
    """-1 when there is no port (the C twin's convention)."""
    return -1 if port is None else _u("port", port, 16)


# ------------------------------------------------------------------------------------------------
# keys, tokens, IDSNs

def generate_key(random_bits: Callable[[int], int] = secrets.randbits) -> int:
    """A fresh 64-bit key from the OS CSPRNG; never zero (RFC 8684 §3.1; Linux loops the
    same). ``random_bits(64)`` is the source (tests give their own)."""
    while True:
        key = random_bits(64)
        if key:
            return key


def key_token_idsn(key: int, version: int = 1) -> tuple[int, int]:
    """(token, IDSN) of ``key``; the first data sequence number sent is IDSN + 1."""
    return _impl.key_token_idsn(_key("key", key), _version(version))


def key_token(key: int, version: int = 1) -> int:
    """The 32-bit token that names a connection in MP_JOIN (RFC 8684 §3.1)."""
    return key_token_idsn(key, version)[0]


def key_idsn(key: int, version: int = 1) -> int:
    """The initial data sequence number of the key's owner (RFC 8684 §3.1)."""
    return key_token_idsn(key, version)[1]


# ------------------------------------------------------------------------------------------------
# MP_JOIN (RFC 8684 §3.2, RFC 6824 §3.2)

def join_hmac(key1: int, key2: int, nonce1: int, nonce2: int, version: int = 1) -> bytes:
    """The whole HMAC(key1 || key2, nonce1 || nonce2): 32 bytes (v1) or 20 (v0)."""
    version = _version(version)
    return _impl.join_hmac(_u("key1", key1, 64), _u("key2", key2, 64), _u("nonce1", nonce1, 32),
                           _u("nonce2", nonce2, 32), version, 32 if version == 1 else 20)


def join_synack_hmac(responder_key: int, initiator_key: int, responder_nonce: int,
                     initiator_nonce: int, version: int = 1) -> bytes:
    """The 8 bytes B puts in its MP_JOIN SYN/ACK: HMAC(K_B||K_A, R_B||R_A), leftmost 64 bits."""
    return join_hmac(responder_key, initiator_key, responder_nonce, initiator_nonce,
                     version)[:SYNACK_HMAC_LEN]


def join_ack_hmac(initiator_key: int, responder_key: int, initiator_nonce: int,
                  responder_nonce: int, version: int = 1) -> bytes:
    """The 20 bytes A puts in its third ACK: HMAC(K_A||K_B, R_A||R_B), leftmost 160 bits."""
    return join_hmac(initiator_key, responder_key, initiator_nonce, responder_nonce,
                     version)[:ACK_HMAC_LEN]


def verify_join_synack(thmac: bytes, responder_key: int, initiator_key: int, responder_nonce: int,
                       initiator_nonce: int, version: int = 1) -> bool:
    """Constant-time check of a SYN/ACK's truncated HMAC."""
    expected = join_synack_hmac(responder_key, initiator_key, responder_nonce, initiator_nonce,
                                version)
    return len(thmac) == SYNACK_HMAC_LEN and _hmac.compare_digest(expected, bytes(thmac))


def verify_join_ack(hmac160: bytes, initiator_key: int, responder_key: int, initiator_nonce: int,
                    responder_nonce: int, version: int = 1) -> bool:
    """Constant-time check of a third ACK's HMAC."""
    expected = join_ack_hmac(initiator_key, responder_key, initiator_nonce, responder_nonce, version)
    return len(hmac160) == ACK_HMAC_LEN and _hmac.compare_digest(expected, bytes(hmac160))


# ------------------------------------------------------------------------------------------------
# ADD_ADDR

def add_addr_hmac(sender_key: int, receiver_key: int, address_id: int, address: Address,
                  port: int | None = None) -> bytes:
    """RFC 8684 ADD_ADDR HMAC (8 bytes): rightmost 64 bits; no port hashes as 0x0000."""
    return _impl.add_addr_hmac(_u("sender_key", sender_key, 64), _u("receiver_key", receiver_key, 64),
                               _u("address_id", address_id, 8), _packed(address),
                               max(_port(port), 0))


def add_addr2_hmac(sender_key: int, address_id: int, address: Address,
                   port: int | None = None) -> bytes:
    """ADD_ADDR2 HMAC (8 bytes) of the rfc6824bis-00 era, as the out-of-tree kernel computes it."""
    return _impl.add_addr2_hmac(_u("sender_key", sender_key, 64), _u("address_id", address_id, 8),
                                _packed(address), _port(port))


def verify_add_addr(option: AddAddr | AddAddr2, sender_key: int, receiver_key: int) -> bool:
    """Check the HMAC of a decoded AddAddr (RFC 8684) or AddAddr2 option (constant time).

    An echo (E=1) and a v0 ADD_ADDR carry no HMAC: ValueError, since there is nothing to check.
    """
    if isinstance(option, AddAddr2):
        expected = add_addr2_hmac(sender_key, option.address_id, option.address_packed, option.port)
        received = option.hmac
    elif isinstance(option, AddAddr) and option.hmac is not None:
        expected = add_addr_hmac(sender_key, receiver_key, option.address_id, option.address_packed,
                                 option.port)
        received = option.hmac
    else:
        raise ValueError(f"{option!r} carries no HMAC to verify")
    return _hmac.compare_digest(expected, received)


# ------------------------------------------------------------------------------------------------
# the keyed hash of a connection's addresses and ports (RFC 6528 §3's F)

def tuple_hasher(secret: bytes) -> Callable[[bytes, bytes, int, bytes, int], int]:
    """F of RFC 6528 §3 under ``secret``: a function
    ``(purpose, local, local_port, remote, remote_port) -> int``, the leftmost 32 bits of
    HMAC-SHA-256(secret, purpose || local || local_port || remote || remote_port) with the
    ports as 16 big-endian bits. ``purpose`` (at most 8 bytes) keeps the hashes made for
    different uses apart. The function takes packed addresses (bytes of 4 or 16) and
    raises TypeError or ValueError for anything else; it is the active backend's, and its
    secret's HMAC pads are hashed here, once, so a call costs two compressions.
    """
    _check.exact_bytes("secret", secret)
    if len(secret) > 64:            # RFC 2104 §2: a key longer than a block is hashed first
        secret = hashlib.sha256(secret).digest()
    return _impl.TupleHash(secret).hash32


# ------------------------------------------------------------------------------------------------
# per-connection context

class KeyContext:
    """The keys of one connection, with the HMAC key pads hashed once.

    Every HMAC afterwards costs two compressions. "local" is this host, "remote"
    the peer; the methods name which side sends the value they compute:

    - ``synack_hmac`` / ``verify_synack``: the SYN/ACK's 64 bits, sent by the responder;
    - ``ack_hmac`` / ``verify_ack``: the third ACK's 160 bits, sent by the initiator;
    - ``add_addr_hmac`` / ``verify_add_addr``: ADD_ADDR sent by us / by the peer.
    """
    __slots__ = ("local_key", "remote_key", "version", "local_token", "local_idsn",
                 "remote_token", "remote_idsn", "_impl", "_state")

    def __init__(self, local_key: int, remote_key: int, version: int = 1) -> None:
        self.local_key = _key("local_key", local_key)
        self.remote_key = _key("remote_key", remote_key)
        self.version = _version(version)
        self._impl = _impl          # a context keeps the backend it was built with
        # the prepared HMAC keys, and both keys' tokens and IDSNs (RFC 8684 §3.1): one call
        (self._state, self.local_token, self.local_idsn, self.remote_token,
         self.remote_idsn) = _impl.new_context(self.local_key, self.remote_key, self.version)

    def __repr__(self):
        return (f"KeyContext(local_token=0x{self.local_token:08x}, "
                f"remote_token=0x{self.remote_token:08x}, version={self.version})")

    def synack_hmac(self, local_nonce: int, remote_nonce: int) -> bytes:
        """We respond to a join: HMAC(local||remote, local_nonce||remote_nonce)[:8]."""
        return self._impl.context_join(self._state, True, _nonce("local_nonce", local_nonce),
                                       _nonce("remote_nonce", remote_nonce), SYNACK_HMAC_LEN)

    def verify_synack(self, thmac: bytes, local_nonce: int, remote_nonce: int) -> bool:
        """We joined: check the peer's HMAC(remote||local, remote_nonce||local_nonce)[:8]."""
        local_nonce = _nonce("local_nonce", local_nonce)
        remote_nonce = _nonce("remote_nonce", remote_nonce)
        return (len(thmac) == SYNACK_HMAC_LEN and
                self._impl.context_verify_join(self._state, False, remote_nonce, local_nonce,
                                               bytes(thmac)))

    def ack_hmac(self, local_nonce: int, remote_nonce: int) -> bytes:
        """We joined: HMAC(local||remote, local_nonce||remote_nonce)[:20] for the third ACK."""
        return self._impl.context_join(self._state, True, _nonce("local_nonce", local_nonce),
                                       _nonce("remote_nonce", remote_nonce), ACK_HMAC_LEN)

    def verify_ack(self, hmac160: bytes, local_nonce: int, remote_nonce: int) -> bool:
        """We responded: check the initiator's HMAC(remote||local, remote_nonce||local_nonce)."""
        local_nonce = _nonce("local_nonce", local_nonce)
        remote_nonce = _nonce("remote_nonce", remote_nonce)
        return (len(hmac160) == ACK_HMAC_LEN and
                self._impl.context_verify_join(self._state, False, remote_nonce, local_nonce,
                                               bytes(hmac160)))

    def add_addr_hmac(self, address_id: int, address: Address, port: int | None = None, *,
                      addaddr2: bool = False) -> bytes:
        """The HMAC of an ADD_ADDR (or ADD_ADDR2) that we send."""
        return self._impl.context_add_addr(self._state, True, _u("address_id", address_id, 8),
                                           _packed(address), _port(port), addaddr2)

    def verify_add_addr(self, option: AddAddr | AddAddr2) -> bool:
        """Check an AddAddr / AddAddr2 option received from the peer (constant time)."""
        cls = type(option)
        # fields: address_id, packed address, port, hmac. Validated when the option was built
        # or parsed, but a tuple made with tuple.__new__ skips that: checked again here (the
        # address goes into a fixed-size buffer in the compiled twin).
        if cls is AddAddr2 or (cls is AddAddr and option[3] is not None):
            expected = self._impl.context_add_addr(
                self._state, False, _u("address_id", option[0], 8), _packed(option[1]),
                _port(option[2]), cls is AddAddr2)
            return _hmac.compare_digest(expected, option[3])
        raise ValueError(f"{option!r} carries no HMAC to verify")


# ------------------------------------------------------------------------------------------------
# token table

# what a TokenTable holds under each token (the engine's: its Connection objects)
_Entry = TypeVar("_Entry", bound=Hashable)


class TokenTable(Generic[_Entry]):
    """Live connections by local token, for finding the connection of an incoming MP_JOIN.

    ``new_key(connection)`` draws keys until one's token is unique and non-zero
    (at most ``max_retries`` draws, as Linux's TOKEN_MAX_RETRIES), registers the
    connection under it and returns ``(key, token)``. Lookups and removals are O(1).
    At ``max_size`` live entries a new key raises TokenTableError.
    """

    def __init__(self, max_size: int = 65536, *, version: int = 1, max_retries: int = 4,
                 key_source: Callable[[], int] = generate_key) -> None:
        if max_size < 1 or max_retries < 1:
            raise ValueError("max_size and max_retries must be at least 1")
        self.max_size = max_size
        self.version = _version(version)
        self.max_retries = max_retries
        self._key_source = key_source
        self._by_token: dict[int, _Entry] = {}

    def __len__(self) -> int:
        return len(self._by_token)

    def __contains__(self, token: int) -> bool:
        return token in self._by_token

    def new_key(self, connection: _Entry) -> tuple[int, int]:
        """A new local key whose token no live connection has, and that token, with
        ``connection`` entered under it: returns (key, token).

        Raises:
            TokenTableError: the table holds ``max_size`` connections, or no unique token
                was found in ``max_retries`` draws.
        """
        if len(self._by_token) >= self.max_size:
            raise TokenTableError(f"token table full: {self.max_size} live connections")
        for _ in range(self.max_retries):
            key = _key("key", self._key_source())
            token = _impl.key_token_idsn(key, self.version)[0]      # RFC 8684 §3.1
            if token != 0 and token not in self._by_token:
                self._by_token[token] = connection
                return key, token
        raise TokenTableError(f"no unique token after {self.max_retries} keys "
                              f"({len(self._by_token)} live connections)")

    def adopt(self, key: int, connection: _Entry) -> int:
        """Register ``connection`` under the token of a key chosen elsewhere (a SYN cookie's
        key, returned by the peer in its third ACK); TokenTableError when the token is 0 or
        already in use, or the table is full. Returns the token."""
        key = _u("key", key, 64)
        if len(self._by_token) >= self.max_size:
            raise TokenTableError(f"token table full: {self.max_size} live connections")
        token = key_token(key, self.version)
        if token == 0 or token in self._by_token:
            raise TokenTableError(f"token {token:08x} is in use or zero")
        self._by_token[token] = connection
        return token

    def lookup(self, token: int) -> _Entry | None:
        """The connection registered under ``token``, or None (then: RST, RFC 8684 §3.2)."""
        return self._by_token.get(token)

    def remove(self, token: int) -> None:
        """Forget a closed connection; unknown tokens are ignored."""
        self._by_token.pop(token, None)


# ------------------------------------------------------------------------------------------------
# batches over numpy arrays

def _array(name: str, values, bits: int) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        return np.zeros(0, dtype=f"u{bits // 8}")
    if arr.dtype.kind not in "ui":
        raise ValueError(f"{name} must hold unsigned integers, got dtype {arr.dtype}")
    if arr.dtype.kind == "i" and arr.min() < 0:
        raise ValueError(f"{name} holds negative values")
    if bits < 64 and int(arr.max()) >= (1 << bits):
        raise ValueError(f"{name} holds values that do not fit in {bits} bits")
    return np.ascontiguousarray(arr, dtype=f"u{bits // 8}")


def _same_length(**arrays) -> int:
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"arrays differ in length: {lengths}")
    return next(iter(lengths.values()))


def _bytes_matrix(name: str, values, width: int) -> np.ndarray:
    """(n, width) uint8 from such an array, or from big-endian uint64 values when width is 8."""
    arr = np.asarray(values)
    if arr.ndim == 1 and width == 8 and arr.dtype.kind in "ui":
        arr = _array(name, arr, 64).astype(">u8").view(np.uint8).reshape(-1, 8)
    if arr.ndim != 2 or arr.shape[1] != width or arr.dtype != np.uint8:
        raise ValueError(f"{name} must be an (n, {width}) uint8 array, got {arr.dtype} {arr.shape}")
    return np.ascontiguousarray(arr)


_PARALLEL_MIN_ITEMS = 8192


def _default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:        # not on Linux
        return os.cpu_count() or 1


def _run_batch(function, arrays: tuple, scalars: tuple, threads: int | None):
    """Call a backend batch ``function(*arrays, *scalars)``, split across threads when the
    backend releases the GIL and the batch is large; results are joined in order."""
    count = len(arrays[0])
    threads = (_default_threads() if threads is None
               else _check.in_range("threads", threads, 1, MAX_THREADS))
    if threads == 1 or count < _PARALLEL_MIN_ITEMS or not getattr(_impl, "RELEASES_GIL", False):
        return function(*arrays, *scalars)
    bounds = np.linspace(0, count, threads + 1, dtype=np.int64)
    parts = [tuple(a[lo:hi] for a in arrays) for lo, hi in zip(bounds[:-1], bounds[1:])]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = list(pool.map(lambda part: function(*part, *scalars), parts))
    if isinstance(results[0], tuple):
        return tuple(np.concatenate(column) for column in zip(*results))
    return np.concatenate(results)


def token_idsn_batch(keys, version: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Tokens (uint32) and IDSNs (uint64) of many keys at once."""
    return _run_batch(_impl.token_idsn_batch, (_array("keys", keys, 64),), (_version(version),), None)


def join_hmac_batch(keys1, keys2, nonces1, nonces2, version: int = 1,
                    length: int | None = None, *, threads: int | None = None) -> np.ndarray:
    """(n, length) uint8: the leftmost ``length`` bytes (default all) of each MP_JOIN HMAC.

    Large batches are split across ``threads`` (default: every core this process may use)."""
    version = _version(version)
    size = 32 if version == 1 else 20
    length = size if length is None else _check.in_range("length", length, 0, size)
    k1, k2 = _array("keys1", keys1, 64), _array("keys2", keys2, 64)
    n1, n2 = _array("nonces1", nonces1, 32), _array("nonces2", nonces2, 32)
    _same_length(keys1=k1, keys2=k2, nonces1=n1, nonces2=n2)
    return _run_batch(_impl.join_hmac_batch, (k1, k2, n1, n2), (version, length), threads)


def _verify_join_batch(received, width, keys1, keys2, nonces1, nonces2, version, threads):
    got = _bytes_matrix("received HMACs", received, width)
    k1, k2 = _array("keys1", keys1, 64), _array("keys2", keys2, 64)
    n1, n2 = _array("nonces1", nonces1, 32), _array("nonces2", nonces2, 32)
    _same_length(received=got, keys1=k1, keys2=k2, nonces1=n1, nonces2=n2)
    return _run_batch(_impl.verify_join_batch, (got, k1, k2, n1, n2), (_version(version),), threads)


def verify_join_synack_batch(thmacs, responder_keys, initiator_keys, responder_nonces,
                             initiator_nonces, version: int = 1, *,
                             threads: int | None = None) -> np.ndarray:
    """Boolean array: each SYN/ACK truncated HMAC ((n, 8) uint8, or uint64 values) is valid."""
    return _verify_join_batch(thmacs, SYNACK_HMAC_LEN, responder_keys, initiator_keys,
                              responder_nonces, initiator_nonces, version, threads)


def verify_join_ack_batch(hmacs, initiator_keys, responder_keys, initiator_nonces,
                          responder_nonces, version: int = 1, *,
                          threads: int | None = None) -> np.ndarray:
    """Boolean array: each third-ACK HMAC ((n, 20) uint8) is valid."""
    return _verify_join_batch(hmacs, ACK_HMAC_LEN, initiator_keys, responder_keys,
                              initiator_nonces, responder_nonces, version, threads)


def add_addr_hmac_batch(sender_keys, receiver_keys, address_ids, addresses, ports=None) -> np.ndarray:
    """(n, 8) uint8 RFC 8684 ADD_ADDR HMACs; ``addresses`` is (n, 4) or (n, 16) uint8;
    ``ports`` uint16 (0, or None for all, when the option has no port)."""
    k1, k2 = _array("sender_keys", sender_keys, 64), _array("receiver_keys", receiver_keys, 64)
    ids = _array("address_ids", address_ids, 8)
    addrs = np.asarray(addresses)
    if addrs.ndim != 2 or addrs.shape[1] not in (4, 16) or addrs.dtype != np.uint8:
        raise ValueError(f"addresses must be an (n, 4) or (n, 16) uint8 array, got "
                         f"{addrs.dtype} {addrs.shape}")
    addrs = np.ascontiguousarray(addrs)
    p = np.zeros(len(k1), dtype=np.uint16) if ports is None else _array("ports", ports, 16)
    _same_length(sender_keys=k1, receiver_keys=k2, address_ids=ids, addresses=addrs, ports=p)
    return _run_batch(_impl.add_addr_hmac_batch, (k1, k2, ids, addrs, p), (), None)


def acceleration() -> str:
    """How the active backend hashes: "sha-ni", "portable" (compiled) or "hashlib" (pure)."""
    return _impl.acceleration()


_impl: Any = None      # the active twin, _crypto_c or _crypto_py


def _bind(impl: Any) -> None:
    global _impl
    _impl = impl


from .. import _backend as _backend_module  # noqa: E402

_backend_module.register(__name__, "_crypto", _bind)
