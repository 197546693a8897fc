"""Crypto properties on every backend: agreement with the `cryptography` package, the wrong
key order / nonce order / truncation side never verifies, batches equal single calls; and the
token table (uniqueness under forced collisions, lookup, removal, the bound)."""

import hashlib

import numpy as np
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.hmac import HMAC
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mptcp_fast.wire import crypto
from mptcp_fast.wire.options import AddAddr

relaxed = settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
u64 = st.integers(0, 2**64 - 1)
u32 = st.integers(0, 2**32 - 1)
address = st.one_of(st.binary(min_size=4, max_size=4), st.binary(min_size=16, max_size=16))


def reference_hmac(version, key: bytes, msg: bytes) -> bytes:
    h = HMAC(key, hashes.SHA256() if version == 1 else hashes.SHA1())
    h.update(msg)
    return h.finalize()


def be(value, size):
    return value.to_bytes(size, "big")


@relaxed
@given(k1=u64, k2=u64, n1=u32, n2=u32, version=st.sampled_from([0, 1]))
def test_join_hmac_matches_cryptography(crypto_backend, k1, k2, n1, n2, version):
    expected = reference_hmac(version, be(k1, 8) + be(k2, 8), be(n1, 4) + be(n2, 4))
    assert crypto.join_hmac(k1, k2, n1, n2, version) == expected
    ctx = crypto.KeyContext(k1, k2, version)
    assert ctx.ack_hmac(n1, n2) == expected[:20] == crypto.join_ack_hmac(k1, k2, n1, n2, version)
    assert ctx.synack_hmac(n1, n2) == expected[:8]


@relaxed
@given(k1=u64, k2=u64, n1=u32, n2=u32, version=st.sampled_from([0, 1]))
def test_wrong_order_or_truncation_never_verifies(crypto_backend, k1, k2, n1, n2, version):
    thmac = crypto.join_synack_hmac(k1, k2, n1, n2, version)
    hmac160 = crypto.join_ack_hmac(k1, k2, n1, n2, version)
    assert crypto.verify_join_synack(thmac, k1, k2, n1, n2, version)
    assert crypto.verify_join_ack(hmac160, k1, k2, n1, n2, version)
    full = crypto.join_hmac(k1, k2, n1, n2, version)
    if k1 != k2:
        assert not crypto.verify_join_synack(thmac, k2, k1, n1, n2, version)
        assert not crypto.verify_join_ack(hmac160, k2, k1, n1, n2, version)
    if n1 != n2:
        assert not crypto.verify_join_synack(thmac, k1, k2, n2, n1, version)
        assert not crypto.verify_join_ack(hmac160, k1, k2, n2, n1, version)
    assert not crypto.verify_join_synack(full[-8:], k1, k2, n1, n2, version) or full[-8:] == full[:8]
    assert not crypto.verify_join_ack(full[-20:], k1, k2, n1, n2, version) or version == 0
    # a context built by the other end verifies what this end sent, and only that
    peer = crypto.KeyContext(k2, k1, version)
    assert peer.verify_ack(hmac160, n2, n1)
    assert peer.verify_synack(crypto.KeyContext(k1, k2, version).synack_hmac(n1, n2), n2, n1)
    assert not peer.verify_ack(hmac160[:19] + bytes([hmac160[19] ^ 1]), n2, n1)


@relaxed
@given(k1=u64, k2=u64, address_id=st.integers(0, 255), addr=address, port=st.none() | st.integers(0, 65535))
def test_add_addr_hmac_matches_cryptography(crypto_backend, k1, k2, address_id, addr, port):
    msg = bytes([address_id]) + addr + be(port or 0, 2)
    expected = reference_hmac(1, be(k1, 8) + be(k2, 8), msg)[-8:]
    assert crypto.add_addr_hmac(k1, k2, address_id, addr, port) == expected
    assert crypto.KeyContext(k1, k2).add_addr_hmac(address_id, addr, port) == expected
    opt = AddAddr(address_id, addr, port, expected)
    assert crypto.verify_add_addr(opt, k1, k2) and crypto.KeyContext(k2, k1).verify_add_addr(opt)
    if k1 != k2:
        assert not crypto.verify_add_addr(opt, k2, k1)        # swapped key order
    wrong_side = reference_hmac(1, be(k1, 8) + be(k2, 8), msg)[:8]
    assert wrong_side == expected or not crypto.verify_add_addr(opt.replace(hmac=wrong_side), k1, k2)
    # ADD_ADDR2: HMAC-SHA1 keyed with the sender's key alone; port only when present
    msg2 = bytes([address_id]) + addr + (b"" if port is None else be(port, 2))
    assert crypto.add_addr2_hmac(k1, address_id, addr, port) == reference_hmac(0, be(k1, 8), msg2)[:8]


@relaxed
@given(key=u64, version=st.sampled_from([0, 1]))
def test_token_and_idsn_match_hashlib(crypto_backend, key, version):
    digest = hashlib.new("sha256" if version == 1 else "sha1", be(key, 8)).digest()
    assert crypto.key_token_idsn(key, version) == (int.from_bytes(digest[:4], "big"),
                                                   int.from_bytes(digest[-8:], "big"))


def test_batches_equal_single_calls(crypto_backend):
    rng = np.random.default_rng(6824)
    n = 300
    k1 = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
    k2 = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
    n1 = rng.integers(0, 2**32 - 1, n, dtype=np.uint32, endpoint=True)
    n2 = rng.integers(0, 2**32 - 1, n, dtype=np.uint32, endpoint=True)
    for version in (0, 1):
        tokens, idsns = crypto.token_idsn_batch(k1, version)
        assert [(int(t), int(i)) for t, i in zip(tokens, idsns)] == [
            crypto.key_token_idsn(int(k), version) for k in k1]
        full = crypto.join_hmac_batch(k1, k2, n1, n2, version)
        assert [row.tobytes() for row in full] == [
            crypto.join_hmac(int(a), int(b), int(c), int(d), version) for a, b, c, d in zip(k1, k2, n1, n2)]
        acks = crypto.join_hmac_batch(k1, k2, n1, n2, version, length=20)
        acks[::7, 3] ^= 0x40                                       # corrupt every 7th
        ok = crypto.verify_join_ack_batch(acks, k1, k2, n1, n2, version)
        assert ok.tolist() == [i % 7 != 0 for i in range(n)]
        thmacs = crypto.join_hmac_batch(k2, k1, n2, n1, version, length=8)
        as_u64 = thmacs.view(">u8").reshape(-1)
        assert crypto.verify_join_synack_batch(as_u64, k2, k1, n2, n1, version).all()
        assert not crypto.verify_join_synack_batch(thmacs, k1, k2, n2, n1, version).any()
    ids = rng.integers(0, 255, n, dtype=np.uint8, endpoint=True)
    for width in (4, 16):
        addrs = rng.integers(0, 255, (n, width), dtype=np.uint8, endpoint=True)
        ports = rng.integers(0, 65535, n, dtype=np.uint16, endpoint=True)
        macs = crypto.add_addr_hmac_batch(k1, k2, ids, addrs, ports)
        assert [m.tobytes() for m in macs] == [
            crypto.add_addr_hmac(int(a), int(b), int(i), addr.tobytes(), int(p))
            for a, b, i, addr, p in zip(k1, k2, ids, addrs, ports)]


def test_batch_argument_errors(crypto_backend):
    with pytest.raises(ValueError, match="differ in length"):
        crypto.join_hmac_batch([1, 2], [3], [4, 5], [6, 7])
    with pytest.raises(ValueError, match="negative"):
        crypto.token_idsn_batch(np.array([-1]))
    with pytest.raises(ValueError, match="32 bits"):
        crypto.join_hmac_batch([1], [2], [2**32], [0])
    with pytest.raises(ValueError, match=r"\(n, 20\)"):
        crypto.verify_join_ack_batch(np.zeros((1, 8), np.uint8), [1], [2], [3], [4])
    assert crypto.join_hmac_batch([], [], [], [], length=8).shape == (0, 8)


def test_argument_errors():
    with pytest.raises(ValueError, match="key"):
        crypto.key_token(2**64)
    with pytest.raises(ValueError, match="version"):
        crypto.key_token(1, version=2)
    with pytest.raises(TypeError):
        crypto.join_hmac("1", 2, 3, 4)
    with pytest.raises(ValueError, match="address"):
        crypto.add_addr_hmac(1, 2, 3, "nowhere")
    with pytest.raises(ValueError, match="no HMAC"):
        crypto.verify_add_addr(AddAddr(1, "10.0.0.1"), 1, 2)      # an echo


def test_generate_key_is_random_and_never_zero():
    keys = {crypto.generate_key() for _ in range(1000)}
    assert len(keys) == 1000 and 0 not in keys
    assert max(keys) >= 2**60                                        # uses all 64 bits
    drawn = iter([0, 0, 0x5A5A])                                     # a source that gives 0 first
    asked = []
    assert crypto.generate_key(lambda bits: asked.append(bits) or next(drawn)) == 0x5A5A
    assert asked == [64, 64, 64]


def sha_token(key: int, version: int = 1) -> int:
    """The token computed here from hashlib: the most significant 32 bits of SHA-256 (v1,
    RFC 8684 §3.1) or SHA-1 (v0, RFC 6824 §3.1) of the key in network order."""
    digest = (hashlib.sha256 if version else hashlib.sha1)(key.to_bytes(8, "big")).digest()
    return int.from_bytes(digest[:4], "big")


class TestTokenTable:
    def test_unique_tokens_under_forced_collisions(self):
        # the key source repeats keys: each repeat collides and a new key must be drawn
        keys = iter([11, 11, 11, 12, 12, 13])
        table = crypto.TokenTable(key_source=lambda: next(keys))
        assert table.new_key("a") == (11, sha_token(11))
        assert table.new_key("b") == (12, sha_token(12))          # 11 collided twice
        assert table.new_key("c") == (13, sha_token(13))
        assert len(table) == 3
        assert table.lookup(sha_token(12)) == "b"

    def test_retry_bound(self):
        table = crypto.TokenTable(max_retries=4, key_source=lambda: 7)
        table.new_key("first")
        with pytest.raises(crypto.TokenTableError, match="no unique token after 4 keys"):
            table.new_key("second")

    def test_lookup_remove_and_bound(self):
        table = crypto.TokenTable(max_size=3)
        tokens = [table.new_key(name)[1] for name in "xyz"]
        assert [table.lookup(t) for t in tokens] == ["x", "y", "z"]
        with pytest.raises(crypto.TokenTableError, match="full: 3"):
            table.new_key("w")
        table.remove(tokens[1])
        table.remove(0xDEADBEEF)                                    # unknown: ignored
        assert table.lookup(tokens[1]) is None and tokens[1] not in table
        key, token = table.new_key("w")
        assert table.lookup(token) == "w" and sha_token(key) == token

    def test_v0_tokens(self):
        table = crypto.TokenTable(version=0)
        key, token = table.new_key("c")
        assert token == sha_token(key, version=0)
