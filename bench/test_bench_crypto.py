"""Crypto benchmarks, both backends: one MP_JOIN / ADD_ADDR HMAC with a key
context, token+IDSN, and a 100k batch verification; `hmac.new` as the reference."""

import hmac

import numpy as np
import pytest

from compare_crypto import ADDR_MSG, KA, KB, KEY_AB, NONCES, RA, RB
from mptcp_fast.wire import crypto
from mptcp_fast.wire.options import AddAddr


def test_join_synack_hmac_with_context(benchmark, backend):
    ctx = crypto.KeyContext(KB, KA)
    benchmark.group = "one MP_JOIN HMAC"
    assert benchmark(ctx.synack_hmac, RB, RA).hex() == "727bd9c894992e35"


def test_join_hmac_reference_hmac_new(benchmark):
    benchmark.group = "one MP_JOIN HMAC"
    benchmark(lambda: hmac.new(KEY_AB, NONCES, "sha256").digest())


def test_add_addr_verify_with_context(benchmark, backend):
    opt = AddAddr(1, "10.0.3.1", 10001, crypto.add_addr_hmac(KB, KA, 1, "10.0.3.1", 10001))
    ctx = crypto.KeyContext(KA, KB)
    benchmark.group = "one ADD_ADDR HMAC"
    assert benchmark(ctx.verify_add_addr, opt)


def test_add_addr_reference_hmac_new(benchmark):
    benchmark.group = "one ADD_ADDR HMAC"
    benchmark(lambda: hmac.new(KEY_AB, ADDR_MSG, "sha256").digest())


def test_token_idsn(benchmark, backend):
    benchmark.group = "token + IDSN"
    assert benchmark(crypto.key_token_idsn, KB)[0] == 0x081D2AF6


@pytest.mark.parametrize("threads", [1, None])
def test_verify_join_ack_batch_100k(benchmark, backend, threads):
    rng = np.random.default_rng(1)
    n = 100_000 if backend == "cython" else 10_000
    k1 = rng.integers(0, 2**63, n, dtype=np.uint64)
    k2 = rng.integers(0, 2**63, n, dtype=np.uint64)
    n1 = rng.integers(0, 2**32 - 1, n, dtype=np.uint32)
    macs = crypto.join_hmac_batch(k1, k2, n1, n1, length=20)
    benchmark.group = f"batch verify ({n} items)"
    ok = benchmark.pedantic(crypto.verify_join_ack_batch, args=(macs, k1, k2, n1, n1),
                            kwargs={"threads": threads}, rounds=3)
    assert ok.all()
