"""The per-connection handshake crypto agrees across backends and with the standard library:
the RFC 6528 §3 keyed hash behind ISNs and timestamp offsets (crypto.tuple_hasher, used by
IsnGenerator), a connection's KeyContext (RFC 8684 §3.1 tokens and IDSNs, §3.2 MP_JOIN and
§3.4.1 ADD_ADDR HMACs, ADD_ADDR2's), TokenTable.new_key under a seeded RandomSource, a
subflow's flow_key, and text addresses parsed through _check.address's cache. The compiled
twin takes short cuts (one call per hash, shared and lazily prepared HMAC keys); these tests
fail if one of them gives a different value than the pure twin or the reference."""

import hashlib
import hmac
import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import require
from mptcp_fast import _backend, _check
from mptcp_fast.engine.isn import IsnGenerator
from mptcp_fast.engine.randomness import RandomSource
from mptcp_fast.wire import _segment_common, crypto, segment
from mptcp_fast.wire.options import AddAddr, AddAddr2

BACKENDS = ("cython", "python")
u64 = st.integers(0, 2**64 - 1)
u32 = st.integers(0, 2**32 - 1)
port = st.integers(0, 0xFFFF)
address = st.one_of(st.binary(min_size=4, max_size=4), st.binary(min_size=16, max_size=16))
secret = st.binary(min_size=16, max_size=100)           # above 64 bytes: hashed first (RFC 2104)
now = st.floats(0, 1e6, allow_nan=False)


@pytest.fixture(autouse=True)
def compiled():
    require("compiled")


def on_each_backend(make):
    """``make()`` run with every API module bound to each backend in turn."""
    results = []
    for name in BACKENDS:
        with _backend.use(name):
            results.append(make())
    return results


def outcome(fn, *args):
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 — the class and message are what we compare
        return ("error", type(exc), str(exc))


def reference_f(secret: bytes, purpose: bytes, local: bytes, lport: int, remote: bytes,
                rport: int) -> int:
    """RFC 6528 §3's F as IsnGenerator defines it, with the standard library's hmac."""
    message = purpose + local + lport.to_bytes(2, "big") + remote + rport.to_bytes(2, "big")
    return int.from_bytes(hmac.digest(secret, message, "sha256")[:4], "big")


# ------------------------------------------------------------------------- RFC 6528 ISNs

@settings(deadline=None, max_examples=300)
@given(secret=secret, local=address, lport=port, remote=address, rport=port, t=now)
def test_isn_and_ts_offset_are_the_same_on_both_backends_and_the_reference(
        secret, local, lport, remote, rport, t):
    generators = on_each_backend(lambda: IsnGenerator(secret))
    isn = (int(t * 250_000) + reference_f(secret, b"", local, lport, remote, rport)) & 0xFFFFFFFF
    offset = reference_f(secret, b"ts", local, lport, remote, rport)
    for g in generators:
        assert g.isn(local, lport, remote, rport, t) == isn
        assert g.ts_offset(local, lport, remote, rport) == offset


@settings(deadline=None, max_examples=50)
@given(secret=secret, v4=st.booleans(), data=st.data())
def test_isn_of_text_and_ipaddress_forms_equals_the_packed_one(secret, v4, data):
    size = 4 if v4 else 16
    local, remote = data.draw(st.binary(min_size=size, max_size=size)), \
        data.draw(st.binary(min_size=size, max_size=size))
    text = str(ipaddress.ip_address(local)), str(ipaddress.ip_address(remote))
    objects = ipaddress.ip_address(local), ipaddress.ip_address(remote)
    for g in on_each_backend(lambda: IsnGenerator(secret)):
        expected = g.isn(local, 1, remote, 2, 0.5)
        assert g.isn(text[0], 1, text[1], 2, 0.5) == expected
        assert g.isn(objects[0], 1, objects[1], 2, 0.5) == expected
        assert g.ts_offset(bytearray(local), 1, remote, 2) == g.ts_offset(local, 1, remote, 2)


@pytest.mark.parametrize("args", [
    (b"", b"\x01" * 5, 1, b"\x02" * 4, 2),                  # neither 4 nor 16 bytes
    (b"", b"\x01" * 200, 1, b"\x02" * 4, 2),                # would overflow a fixed buffer
    (b"", "198.18.0.1", 1, b"\x02" * 4, 2),                 # text: the caller converts it
    (b"", None, 1, b"\x02" * 4, 2),
    (b"", b"\x01" * 4, True, b"\x02" * 4, 2),               # bool is not a port
    (b"", b"\x01" * 4, 1.0, b"\x02" * 4, 2),
    (b"", b"\x01" * 4, 1, b"\x02" * 4, 65536),
    (b"", b"\x01" * 4, 1, b"\x02" * 4, -1),
    (b"", b"\x01" * 4, 1, b"\x02" * 4, 2**70),
    (b"x" * 9, b"\x01" * 4, 1, b"\x02" * 4, 2),             # purpose longer than 8 bytes
    ("ts", b"\x01" * 4, 1, b"\x02" * 4, 2),
])
def test_tuple_hasher_refuses_the_same_values_with_the_same_errors(args):
    results = on_each_backend(lambda: outcome(crypto.tuple_hasher(bytes(32)), *args))
    assert results[0] == results[1]
    assert results[0][0] == "error"


def test_tuple_hasher_takes_numpy_ports_as_the_pure_twin_does():
    np = pytest.importorskip("numpy")
    results = on_each_backend(
        lambda: crypto.tuple_hasher(bytes(32))(b"", bytes(4), np.uint16(80), bytes(4), 443))
    assert results[0] == results[1] == reference_f(bytes(32), b"", bytes(4), 80, bytes(4), 443)


# ------------------------------------------------------------------------- KeyContext

def reference_context(local: int, remote: int, version: int):
    name = "sha256" if version == 1 else "sha1"
    lk, rk = local.to_bytes(8, "big"), remote.to_bytes(8, "big")

    def token_idsn(key: bytes):
        digest = hashlib.new(name, key).digest()
        return int.from_bytes(digest[:4], "big"), int.from_bytes(digest[-8:], "big")
    return lk, rk, name, token_idsn(lk), token_idsn(rk)


@settings(deadline=None, max_examples=200)
@given(local=u64, remote=u64, version=st.sampled_from([0, 1]), n1=u32, n2=u32, addr=address,
       addr_port=st.one_of(st.none(), st.integers(1, 0xFFFF)), addaddr2_first=st.booleans())
def test_key_context_is_the_same_on_both_backends_and_the_reference(
        local, remote, version, n1, n2, addr, addr_port, addaddr2_first):
    lk, rk, name, (ltok, lidsn), (rtok, ridsn) = reference_context(local, remote, version)
    nonces = n1.to_bytes(4, "big") + n2.to_bytes(4, "big")
    message = bytes([7]) + addr
    add_addr = hmac.digest(lk + rk, message + (addr_port or 0).to_bytes(2, "big"), "sha256")[-8:]
    add_addr2 = hmac.digest(lk, message + (b"" if addr_port is None
                                           else addr_port.to_bytes(2, "big")), "sha1")[:8]
    peer_add_addr = hmac.digest(rk + lk, message + (addr_port or 0).to_bytes(2, "big"),
                                "sha256")[-8:]
    peer_add_addr2 = hmac.digest(rk, message + (b"" if addr_port is None
                                                else addr_port.to_bytes(2, "big")), "sha1")[:8]

    def computed():
        ctx = crypto.KeyContext(local, remote, version)
        # ADD_ADDR2's keys are prepared on first use in the compiled twin: either order
        first = ctx.add_addr_hmac(7, addr, addr_port, addaddr2=True) if addaddr2_first else None
        values = ((ctx.local_token, ctx.local_idsn, ctx.remote_token, ctx.remote_idsn),
                  ctx.synack_hmac(n1, n2), ctx.ack_hmac(n1, n2),
                  ctx.add_addr_hmac(7, addr, addr_port),
                  ctx.add_addr_hmac(7, addr, addr_port, addaddr2=True),
                  ctx.verify_add_addr(AddAddr(7, addr, addr_port, hmac=peer_add_addr)),
                  ctx.verify_add_addr(AddAddr2(7, addr, addr_port, hmac=peer_add_addr2)),
                  # the peer's: HMAC(remote || local, remote nonce || local nonce)
                  ctx.verify_synack(hmac.digest(rk + lk, nonces, name)[:8], n2, n1),
                  ctx.verify_ack(hmac.digest(rk + lk, nonces, name)[:20], n2, n1))
        assert first is None or first == values[4]
        return values

    expected = ((ltok, lidsn, rtok, ridsn), hmac.digest(lk + rk, nonces, name)[:8],
                hmac.digest(lk + rk, nonces, name)[:20], add_addr, add_addr2,
                True, True, True, True)
    assert on_each_backend(computed) == [expected, expected]


@pytest.mark.parametrize("args", [(-1, 2, 1), (1, 2**64, 1), (1.0, 2, 1), (True, 2, 1),
                                  (1, None, 1), (1, 2, 2), (1, 2, None)])
def test_key_context_refuses_the_same_values_with_the_same_errors(args):
    results = on_each_backend(lambda: outcome(crypto.KeyContext, *args))
    assert results[0] == results[1]
    assert results[0][0] == "error"


def test_key_context_takes_numpy_keys_and_a_bool_version_as_before():
    np = pytest.importorskip("numpy")
    contexts = on_each_backend(lambda: crypto.KeyContext(np.uint64(2**63 + 5), 9, True))
    assert [c.version for c in contexts] == [1, 1]
    assert [type(c.local_key) for c in contexts] == [int, int]
    assert contexts[0].local_token == contexts[1].local_token == crypto.key_token(2**63 + 5)


# ------------------------------------------------------------------------- TokenTable, flow_key

def test_token_table_draws_the_same_keys_and_tokens_on_both_backends():
    def draws():
        table = crypto.TokenTable(key_source=RandomSource.seeded(7).key)
        return [table.new_key(i) for i in range(200)]
    cython_draws, python_draws = on_each_backend(draws)
    assert cython_draws == python_draws
    for key, token in python_draws:
        assert token == int.from_bytes(hashlib.sha256(key.to_bytes(8, "big")).digest()[:4], "big")


def test_token_table_refuses_a_key_source_that_gives_no_64_bit_int():
    for bad in (lambda: -1, lambda: 2**64, lambda: 1.5):
        results = on_each_backend(lambda: outcome(crypto.TokenTable(key_source=bad).new_key, 1))
        assert results[0] == results[1] and results[0][0] == "error"


@settings(deadline=None, max_examples=200)
@given(local=address, lport=port, remote=address, rport=port)
def test_flow_key_is_the_same_on_both_backends(local, lport, remote, rport):
    expected = _segment_common.flow_key(local, lport, remote, rport)
    assert expected == local + lport.to_bytes(2, "big") + remote + rport.to_bytes(2, "big")
    assert on_each_backend(lambda: segment.flow_key(local, lport, remote, rport)) \
        == [expected, expected]


@pytest.mark.parametrize("args", [
    (b"\x01" * 4, 1.0, b"\x02" * 4, 2),             # a float port
    (bytearray(4), 1, b"\x02" * 4, 2),              # a bytearray address
    (None, 1, b"\x02" * 4, 2),
    (b"\x01" * 4, 1, b"\x02" * 4, 70000),           # a port out of range
    (b"\x01" * 4, -1, b"\x02" * 4, 2),
    (b"\x01" * 4, True, b"\x02" * 4, 2),            # a bool is no port
    (b"\x01" * 4, 1, b"\x02" * 16, 2),              # two families: joined as given
])
def test_flow_key_takes_and_refuses_the_same_arguments_on_both_backends(args):
    results = on_each_backend(lambda: outcome(segment.flow_key, *args))
    assert results[0] == results[1]
    assert args[2] == b"\x02" * 16 or results[0][0] == "error"


# ------------------------------------------------------------------------- text addresses

def test_a_text_address_is_parsed_once_and_a_bad_one_raises_every_time():
    assert _check.address("a", "198.18.0.2") == bytes([198, 18, 0, 2])
    assert _check.address("a", "198.18.0.2") is _check.address("a", "198.18.0.2")
    assert _check.address("a", "2001:db8::1") == ipaddress.ip_address("2001:db8::1").packed
    for _ in range(2):
        with pytest.raises(ValueError, match="a must be an IPv4 or IPv6 address, got 'nope'"):
            _check.address("a", "nope")
