"""Crypto vectors: live Linux 6.18 values and the kernel's KUnit vectors (crypto_test.c), RFC 4231 and
RFC 2202 for the HMAC primitives, and example values worked from RFC 8684 §3.1-3.4 and RFC 6824
§3.1-3.2 with two fixed keys and nonces; on every backend."""

import pytest

from mptcp_fast import _backend
from mptcp_fast.wire import crypto

# ---------------------------------------------------------------- live kernel values (x1, x2)
X1_KA, X1_KB = 0x8EB52E2FFE8CC175, 0x1C5A07C724183A63
X2_KA, X2_KB = 0x4DB8D441E97AE28F, 0x851CDC028EC35B5D

TOKENS = [  # key, token, IDSN
    (X1_KB, 0x081D2AF6, 0x98101DAA067682CB),
    (X1_KA, 0x544C12DE, 0x0019A09456788364),
    (X2_KB, 0xDA15898A, 0x9A915667704F8200),
    (X2_KA, None, 0x43143B25BCE216B1),
    (0x0102030405060708, 0x66840DDA, 0xF5A101D3D29D6F72),
]

JOINS = [  # initiator key, responder key, R_A, R_B, SYN/ACK thmac, third-ACK HMAC
    (X1_KA, X1_KB, 0x2B5DA663, 0x2BC41846, "727bd9c894992e35",
     "22abd0d9996ce8c26e72e75dd7a0143c4e6221d1"),
    (X1_KA, X1_KB, 0x805B43EC, 0x16C3BCBB, "280d0de8e5ea3593",
     "a558f0644aa6c93b3843af7df64ca9d95142c8ef"),
    (X2_KA, X2_KB, 0xCC3BFAEC, 0x8F433B5C, "63eeb7d989e545d5",
     "57d869ab62476208e8ffbb5c3df4122ba6e222af"),
    (X2_KA, X2_KB, 0xA4C52588, 0x78EBD1EA, "8a6dc1d7448901da",
     "1625ffcda9bd1f4b0e8e8835806885246446c60d"),
]

ADD_ADDRS = [  # sender, receiver, id, address, port, hmac
    (X1_KB, X1_KA, 1, "10.0.3.1", None, "b4eedf2375594a29"),
    (X2_KB, X2_KA, 1, "10.0.3.1", 10001, "118607e7815b7f4d"),
]


@pytest.mark.parametrize("key,token,idsn", TOKENS)
def test_live_tokens_and_idsns(crypto_backend, key, token, idsn):
    got_token, got_idsn = crypto.key_token_idsn(key)
    assert got_idsn == idsn
    if token is not None:
        assert got_token == token


@pytest.mark.parametrize("ka,kb,ra,rb,thmac,hmac160", JOINS)
def test_live_join_hmacs(crypto_backend, ka, kb, ra, rb, thmac, hmac160):
    assert crypto.join_synack_hmac(kb, ka, rb, ra).hex() == thmac
    assert crypto.join_ack_hmac(ka, kb, ra, rb).hex() == hmac160
    assert crypto.verify_join_synack(bytes.fromhex(thmac), kb, ka, rb, ra)
    assert crypto.verify_join_ack(bytes.fromhex(hmac160), ka, kb, ra, rb)
    # both ends' contexts agree with the kernel
    responder, initiator = crypto.KeyContext(kb, ka), crypto.KeyContext(ka, kb)
    assert responder.synack_hmac(rb, ra).hex() == thmac
    assert initiator.verify_synack(bytes.fromhex(thmac), ra, rb)
    assert initiator.ack_hmac(ra, rb).hex() == hmac160
    assert responder.verify_ack(bytes.fromhex(hmac160), rb, ra)


@pytest.mark.parametrize("sender,receiver,address_id,address,port,expected", ADD_ADDRS)
def test_live_add_addr_hmacs(crypto_backend, sender, receiver, address_id, address, port, expected):
    assert crypto.add_addr_hmac(sender, receiver, address_id, address, port).hex() == expected
    assert crypto.KeyContext(sender, receiver).add_addr_hmac(address_id, address, port).hex() == expected
    from mptcp_fast.wire.options import AddAddr
    opt = AddAddr(address_id, address, port, bytes.fromhex(expected))
    assert crypto.verify_add_addr(opt, sender, receiver)
    assert crypto.KeyContext(receiver, sender).verify_add_addr(opt)


# ---------------------------------------------------------------- KUnit (ASCII bytes, net/mptcp/crypto_test.c)
KUNIT = [
    ("0b0b0b0b0b0b0b0b", "48692054", "8385e24fb4235ac37556b6b886db106284a1da671699f46db1f235ec622dcafa"),
    ("aaaaaaaaaaaaaaaa", "dddddddd", "2c5e219164ff1dca1c4a92318d847bb6b9d44492984e1eb71aff9022f71046e9"),
    ("0102030405060708", "cdcdcdcd", "e73b9ba9969969cefb04aa0d6df18ec2fcc075b6f23b4d8c4da736a5dbbc6e7d"),
]


@pytest.mark.parametrize("key,msg,result", KUNIT)
def test_kunit_vectors_use_ascii_bytes(crypto_backend, key, msg, result):
    k, m = key.encode(), msg.encode()        # the strings' ASCII bytes, not hex-decoded
    key1, key2 = int.from_bytes(k[:8], "big"), int.from_bytes(k[8:], "big")
    nonce1, nonce2 = int.from_bytes(m[:4], "big"), int.from_bytes(m[4:], "big")
    assert crypto.join_hmac(key1, key2, nonce1, nonce2).hex() == result


# ---------------------------------------------------------------- RFC 4231 / RFC 2202 primitives
RFC4231 = [  # HMAC-SHA256 test cases 1-4 (the ones within one block)
    ("0b" * 20, b"Hi There".hex(), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (b"Jefe".hex(), b"what do ya want for nothing?".hex(),
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    ("aa" * 20, "dd" * 50, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
    ("0102030405060708090a0b0c0d0e0f10111213141516171819", "cd" * 50,
     "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
]
RFC2202 = [  # HMAC-SHA1 test cases 1-5
    ("0b" * 20, b"Hi There".hex(), "b617318655057264e28bc0b6fb378c8ef146be00"),
    (b"Jefe".hex(), b"what do ya want for nothing?".hex(), "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"),
    ("aa" * 20, "dd" * 50, "125d7342b9ac11cd91a39af48aa17b4f63f175d3"),
    ("0102030405060708090a0b0c0d0e0f10111213141516171819", "cd" * 50,
     "4c9007f4026250c6bc8414f9bf50c86c2d7235da"),
    ("0c" * 20, b"Test With Truncation".hex(), "4c1a03424b55e07fe7f27be1d58bb9324a9a5a04"),
]


def impl():
    return _backend.implementation("_crypto", _backend.active())


@pytest.mark.parametrize("key,msg,mac", RFC4231)
def test_rfc4231_hmac_sha256(crypto_backend, key, msg, mac):
    assert impl().hmac_short(32, bytes.fromhex(key), bytes.fromhex(msg)).hex() == mac


@pytest.mark.parametrize("key,msg,mac", RFC2202)
def test_rfc2202_hmac_sha1(crypto_backend, key, msg, mac):
    assert impl().hmac_short(20, bytes.fromhex(key), bytes.fromhex(msg)).hex() == mac


# ------------------------------------ examples worked from the RFCs, and docs/add-addr2.md
KA, KB, RA, RB = 0x0123456789ABCDEF, 0xFEDCBA9876543210, 0x11223344, 0x55667788


def test_spec_v1_examples(crypto_backend):
    assert crypto.key_token_idsn(KA) == (0x55C53F5D, 0x570762CD38BE9818)
    assert crypto.key_token_idsn(KB) == (0x18F9781B, 0x280818BF0FA7E28E)
    assert crypto.join_hmac(KA, KB, RA, RB).hex() == (
        "d8b5e46b7a782e79d3ecfd78307751df993e222b384c52754868f2561cf58998")
    assert crypto.join_ack_hmac(KA, KB, RA, RB).hex() == "d8b5e46b7a782e79d3ecfd78307751df993e222b"
    assert crypto.join_synack_hmac(KB, KA, RB, RA).hex() == "0d44dc5f555121b7"
    assert crypto.add_addr_hmac(KA, KB, 5, "192.0.2.1").hex() == "6559e658628f91ae"
    assert crypto.add_addr_hmac(KA, KB, 5, "192.0.2.1", 8080).hex() == "fd343c023d07761b"


def test_spec_v0_examples(crypto_backend):
    assert crypto.key_token_idsn(KA, 0) == (0x0CA2EADB, 0xE3DF8EE121F10547)
    assert crypto.key_token_idsn(KB, 0) == (0xA5BE6871, 0x334FC234BEE495CA)
    assert crypto.join_hmac(KA, KB, RA, RB, 0).hex() == "7120574de71020f0d199f170407bf80fb408fdc4"
    assert crypto.join_ack_hmac(KA, KB, RA, RB, 0).hex() == "7120574de71020f0d199f170407bf80fb408fdc4"
    assert crypto.join_synack_hmac(KB, KA, RB, RA, 0).hex() == "49412f7213682cb1"
    ctx = crypto.KeyContext(KB, KA, version=0)
    assert ctx.synack_hmac(RB, RA).hex() == "49412f7213682cb1"


def test_spec_add_addr2_example(crypto_backend):
    from mptcp_fast.wire import options
    opt = options.parse_option(bytes.fromhex("1e103405c00002011bacfddc1024aa2a"))
    assert crypto.add_addr2_hmac(KA, 5, "192.0.2.1") == opt.hmac
    assert crypto.verify_add_addr(opt, KA, KB)
    assert crypto.KeyContext(KB, KA).verify_add_addr(opt)          # we receive from A
    assert crypto.KeyContext(KA, KB).add_addr_hmac(5, "192.0.2.1", addaddr2=True) == opt.hmac
