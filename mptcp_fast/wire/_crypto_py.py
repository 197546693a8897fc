"""Pure-Python twin of pyx/mptcp_fast/wire/_crypto_c.pyx: MPTCP keys, tokens, IDSNs and HMACs.

The reference implementation: hashlib and hmac (RFC 2104) from the standard
library. Same functions, results and errors as the compiled module.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING

from mptcp_fast._lazy import lazy_module

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy_module("numpy")        # imported by the first batch over arrays (_lazy.py)

from .. import _check

_HASHES = {1: "sha256", 0: "sha1"}   # RFC 8684 (v1) SHA-256; RFC 6824 (v0) SHA-1


def acceleration():
    """The pure backend always hashes through hashlib."""
    return "hashlib"


def _hash_name(version: int) -> str:
    try:
        return _HASHES[version]
    except KeyError:
        raise ValueError(f"version must be 0 or 1, not {version}") from None


def _be(value: int, size: int) -> bytes:
    return value.to_bytes(size, "big")   # OverflowError when out of range, like the C twin


def hmac_short(digest_size: int, key: bytes, msg: bytes) -> bytes:
    """The primitive: HMAC-SHA256 (32) or HMAC-SHA1 (20), key <= 64 bytes, message <= 55."""
    _check.exact_bytes("key", key)
    _check.exact_bytes("msg", msg)
    if digest_size not in (32, 20):
        raise ValueError(f"digest_size must be 32 or 20, not {digest_size}")
    if len(key) > 64 or len(msg) > 55:
        raise ValueError("hmac_short takes a key of at most 64 bytes and a message of at most 55")
    return hmac.digest(key, msg, "sha256" if digest_size == 32 else "sha1")


def key_token_idsn(key: int, version: int):
    """(token, IDSN) of a key: first 32 / last 64 bits of its hash (RFC 8684 §3.1)."""
    digest = hashlib.new(_hash_name(version), _be(key, 8)).digest()
    return int.from_bytes(digest[:4], "big"), int.from_bytes(digest[-8:], "big")


def join_hmac(key1: int, key2: int, nonce1: int, nonce2: int, version: int, length: int) -> bytes:
    """Leftmost ``length`` bytes of HMAC(key1 || key2, nonce1 || nonce2) (RFC 8684 §3.2)."""
    name = _hash_name(version)
    size = hashlib.new(name).digest_size
    if not 0 <= length <= size:
        raise ValueError(f"length must be 0..{size}, not {length}")
    msg = _be(nonce1, 4) + _be(nonce2, 4)
    return hmac.digest(_be(key1, 8) + _be(key2, 8), msg, name)[:length]


def _add_addr_message(address_id: int, address: bytes, port: int) -> bytes:
    _check.packed_address("address", address)
    return _be(address_id, 1) + address + (b"" if port < 0 else _be(port, 2))


def add_addr_hmac(key1: int, key2: int, address_id: int, address: bytes, port: int) -> bytes:
    """RFC 8684 §3.4.1: rightmost 64 bits of HMAC-SHA256(key1 || key2, id || address || port)."""
    msg = _add_addr_message(address_id, address, port)
    return hmac.digest(_be(key1, 8) + _be(key2, 8), msg, "sha256")[-8:]


def add_addr2_hmac(key: int, address_id: int, address: bytes, port: int) -> bytes:
    """ADD_ADDR2 (docs/add-addr2.md): leftmost 64 bits of HMAC-SHA1(key, id || address [|| port])."""
    return hmac.digest(_be(key, 8), _add_addr_message(address_id, address, port), "sha1")[:8]


# ------------------------------------------------------------------------------------------------
# the keyed hash of a connection's addresses and ports (RFC 6528 §3's F)

MAX_PURPOSE = 8     # purpose || 16 || 2 || 16 || 2 bytes: within one HMAC block's 55 (C twin)
_IPAD = bytes(b ^ 0x36 for b in range(256))     # RFC 2104: the key XOR ipad, XOR opad
_OPAD = bytes(b ^ 0x5C for b in range(256))


def _port16(name: str, port) -> int:
    if type(port) is int and 0 <= port <= 0xFFFF:
        return port
    return _check.uint(name, port, 16)


def _packed(name: str, address) -> bytes:
    if type(address) is bytes and len(address) in (4, 16):
        return address
    return _check.packed_address(name, address)


class TupleHash:
    """HMAC-SHA-256 (RFC 2104) under one secret of at most 64 bytes, its pads hashed once:
    each hash32 costs two compressions and two copies, not a new HMAC object."""
    __slots__ = ("_inner", "_outer")

    def __init__(self, secret: bytes):
        _check.exact_bytes("secret", secret)
        if len(secret) > 64:
            raise ValueError(f"the secret must be at most 64 bytes, got {len(secret)}")
        key = secret.ljust(64, b"\0")
        self._inner = hashlib.sha256(key.translate(_IPAD))
        self._outer = hashlib.sha256(key.translate(_OPAD))

    def hash32(self, purpose: bytes, local: bytes, local_port: int, remote: bytes,
               remote_port: int) -> int:
        """Leftmost 32 bits of HMAC(secret, purpose || local || local_port || remote ||
        remote_port), ports as 16 big-endian bits; addresses packed (4 or 16 bytes)."""
        _check.exact_bytes("purpose", purpose)
        if len(purpose) > MAX_PURPOSE:
            raise ValueError(f"purpose must be at most {MAX_PURPOSE} bytes, got {len(purpose)}")
        message = (purpose + _packed("local", local)
                   + _port16("local_port", local_port).to_bytes(2, "big")
                   + _packed("remote", remote)
                   + _port16("remote_port", remote_port).to_bytes(2, "big"))
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return int.from_bytes(outer.digest()[:4], "big")


# ------------------------------------------------------------------------------------------------
# per-connection key context: pre-keyed hmac objects, copied for each message

class ContextState:
    """Prepared HMAC keys of one connection: both key orders, and each key alone (ADD_ADDR2)."""
    __slots__ = ("local_remote", "remote_local", "local_only", "remote_only",
                 "add_addr_local", "add_addr_remote")

    def __init__(self, local_key: int, remote_key: int, version: int):
        name = _hash_name(version)
        local, remote = _be(local_key, 8), _be(remote_key, 8)
        self.local_remote = hmac.new(local + remote, digestmod=name)
        self.remote_local = hmac.new(remote + local, digestmod=name)
        self.local_only = hmac.new(local, digestmod="sha1")
        self.remote_only = hmac.new(remote, digestmod="sha1")
        self.add_addr_local = hmac.new(local + remote, digestmod="sha256")
        self.add_addr_remote = hmac.new(remote + local, digestmod="sha256")


def new_context(local_key: int, remote_key: int, version: int):
    """(state, local token, local IDSN, remote token, remote IDSN): all that a KeyContext
    needs, in one call."""
    return (ContextState(local_key, remote_key, version), *key_token_idsn(local_key, version),
            *key_token_idsn(remote_key, version))


def _mac(prepared, msg: bytes) -> bytes:
    h = prepared.copy()
    h.update(msg)
    return h.digest()


def context_join(state, local_first, nonce1, nonce2, length) -> bytes:
    """Leftmost ``length`` bytes of the MP_JOIN HMAC keyed local||remote (or remote||local)."""
    _check.instance("state", state, ContextState)
    prepared = state.local_remote if local_first else state.remote_local
    if not 0 <= length <= prepared.digest_size:
        raise ValueError(f"length must be 0..{prepared.digest_size}, not {length}")
    return _mac(prepared, _be(nonce1, 4) + _be(nonce2, 4))[:length]


def context_verify_join(state, local_first, nonce1, nonce2, received: bytes) -> bool:
    """Constant-time check of a received (truncated) MP_JOIN HMAC."""
    _check.instance("state", state, ContextState)
    _check.exact_bytes("received", received)
    prepared = state.local_remote if local_first else state.remote_local
    if not 0 < len(received) <= prepared.digest_size:
        return False
    expected = _mac(prepared, _be(nonce1, 4) + _be(nonce2, 4))[:len(received)]
    return hmac.compare_digest(expected, received)


def context_add_addr(state, local_sender, address_id, address, port, addaddr2) -> bytes:
    """ADD_ADDR HMAC sent by us (local_sender) or by the peer: v1 or ADD_ADDR2 profile."""
    _check.instance("state", state, ContextState)
    if addaddr2:
        prepared = state.local_only if local_sender else state.remote_only
        return _mac(prepared, _add_addr_message(address_id, address, port))[:8]
    prepared = state.add_addr_local if local_sender else state.add_addr_remote
    return _mac(prepared, _add_addr_message(address_id, address, max(port, 0)))[-8:]


# ------------------------------------------------------------------------------------------------
# batches: a plain loop over the one-at-a-time functions (the reference for the compiled loops)

def token_idsn_batch(keys, version):
    pairs = [key_token_idsn(int(k), version) for k in keys]
    return (np.array([t for t, _ in pairs], dtype=np.uint32),
            np.array([i for _, i in pairs], dtype=np.uint64))


def _batch_lengths(*arrays) -> int:
    """The common length of a batch's arrays (the compiled loops index them all by one i)."""
    count = len(arrays[0])
    if any(len(a) != count for a in arrays):
        raise ValueError("the batch's arrays differ in length")
    return count


def join_hmac_batch(keys1, keys2, nonces1, nonces2, version, length):
    _batch_lengths(keys1, keys2, nonces1, nonces2)
    size = hashlib.new(_hash_name(version)).digest_size
    if not 0 <= length <= size:
        raise ValueError(f"length must be 0..{size}, not {length}")
    out = np.empty((len(keys1), length), dtype=np.uint8)
    for i in range(len(keys1)):
        out[i] = np.frombuffer(join_hmac(int(keys1[i]), int(keys2[i]), int(nonces1[i]),
                                         int(nonces2[i]), version, length), dtype=np.uint8)
    return out


def verify_join_batch(received, keys1, keys2, nonces1, nonces2, version):
    _batch_lengths(received, keys1, keys2, nonces1, nonces2)
    width = received.shape[1]
    size = hashlib.new(_hash_name(version)).digest_size
    if not 0 <= width <= size:
        raise ValueError(f"received HMACs must be 0..{size} bytes wide, not {width}")
    result = np.empty(len(keys1), dtype=np.bool_)
    for i in range(len(keys1)):
        expected = join_hmac(int(keys1[i]), int(keys2[i]), int(nonces1[i]), int(nonces2[i]),
                             version, width)
        result[i] = hmac.compare_digest(expected, received[i].tobytes())
    return result


def add_addr_hmac_batch(keys1, keys2, address_ids, addresses, ports):
    _batch_lengths(keys1, keys2, address_ids, addresses, ports)
    if addresses.shape[1] not in (4, 16):
        raise ValueError(f"address must be 4 or 16 bytes, got {addresses.shape[1]}")
    out = np.empty((len(keys1), 8), dtype=np.uint8)
    for i in range(len(keys1)):
        out[i] = np.frombuffer(add_addr_hmac(int(keys1[i]), int(keys2[i]), int(address_ids[i]),
                                             addresses[i].tobytes(), int(ports[i])), dtype=np.uint8)
    return out
