# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled twin of mptcp_fast/wire/_crypto_py.py: MPTCP keys, tokens, IDSNs and HMACs.

SHA-256/SHA-1 and HMAC come from pyx/mf_sha.h (FIPS 180-4, RFC 2104), with
SHA-NI on CPUs that have it. Arguments were validated by mptcp_fast.wire.crypto;
integers out of range raise OverflowError here, as in the pure twin.
"""

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from mf_bytes cimport be32, be64, bool8, put16, put32, put64
from libc.string cimport memcpy
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE

from mptcp_fast._lazy import lazy_module

np = lazy_module("numpy")           # imported by the first batch over arrays (_lazy.py)

from mptcp_fast import _check


cdef extern from "mf_sha.h" nogil:
    ctypedef struct mf_hmac_key:
        int digest_size
    int MF_HAVE_SHANI_CODE
    int mf_use_shani
    int mf_cpu_has_shani()
    void mf_hash_short(int digest_size, const uint8_t* msg, size_t length, uint8_t* out)
    void mf_hmac_init(mf_hmac_key* k, int digest_size, const uint8_t* key, size_t keylen)
    void mf_hmac(const mf_hmac_key* k, const uint8_t* msg, size_t length, uint8_t* out)
    void mf_hmac2(const mf_hmac_key* k1, const uint8_t* msg1, size_t len1, uint8_t* out1,
                  const mf_hmac_key* k2, const uint8_t* msg2, size_t len2, uint8_t* out2)
    int mf_equal_ct(const uint8_t* a, const uint8_t* b, size_t n)

cdef int _HAS_SHANI = mf_cpu_has_shani()
mf_use_shani = _HAS_SHANI

# The batch loops below run without the GIL, so mptcp_fast.wire.crypto may split a
# batch across threads.
RELEASES_GIL = True


def acceleration():
    """``"sha-ni"`` when SHA-256 runs on the CPU's SHA extensions, else ``"portable"``."""
    return "sha-ni" if mf_use_shani else "portable"


def set_acceleration(bint enabled):
    """Use SHA-NI if ``enabled`` and the CPU has it (tests run both paths). Returns the mode."""
    global mf_use_shani
    mf_use_shani = 1 if (enabled and _HAS_SHANI) else 0
    return acceleration()


# ------------------------------------------------------------------------------------------------
# helpers


cdef inline int digest_size_of(int version) except -1:
    # RFC 8684 (v1) uses SHA-256; RFC 6824 (v0) SHA-1.
    if version == 1:
        return 32
    if version == 0:
        return 20
    raise ValueError(f"version must be 0 or 1, not {version}")

cdef inline void key_pair(uint8_t* out, uint64_t key1, uint64_t key2) noexcept nogil:
    put64(out, key1)
    put64(out + 8, key2)

cdef inline int check_address(bytes address) except -1:
    """The address is copied into a 19-byte message (id || address || port): 4 or 16 bytes
    only, never None (its pointer is read). _check.packed_address raises."""
    if address is None or (PyBytes_GET_SIZE(address) != 4 and PyBytes_GET_SIZE(address) != 16):
        _check.packed_address("address", address)
    return 0


cdef inline int check_batch(Py_ssize_t count, Py_ssize_t a, Py_ssize_t b, Py_ssize_t c,
                            Py_ssize_t d) except -1:
    """Every array of a batch is indexed by one i below 'count': all of one length."""
    if a != count or b != count or c != count or d != count:
        raise ValueError("the batch's arrays differ in length")
    return 0


cdef inline size_t add_addr_message(uint8_t* msg, uint8_t address_id, const uint8_t* address,
                                    Py_ssize_t alen, int port) noexcept nogil:
    """id || address || port; port < 0 means absent (no bytes)."""
    msg[0] = address_id
    memcpy(msg + 1, address, alen)
    if port < 0:
        return 1 + alen
    msg[1 + alen] = port >> 8
    msg[2 + alen] = port & 0xFF
    return 3 + alen


# ------------------------------------------------------------------------------------------------
# one at a time

def hmac_short(int digest_size, bytes key, bytes msg):
    """The primitive: HMAC-SHA256 (32) or HMAC-SHA1 (20), key <= 64 bytes, message <= 55."""
    cdef mf_hmac_key k
    cdef uint8_t digest[32]
    if key is None or msg is None:
        _check.exact_bytes("key", key)
        _check.exact_bytes("msg", msg)
    if digest_size != 32 and digest_size != 20:
        raise ValueError(f"digest_size must be 32 or 20, not {digest_size}")
    if PyBytes_GET_SIZE(key) > 64 or PyBytes_GET_SIZE(msg) > 55:
        raise ValueError("hmac_short takes a key of at most 64 bytes and a message of at most 55")
    mf_hmac_init(&k, digest_size, <const uint8_t*>PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key))
    mf_hmac(&k, <const uint8_t*>PyBytes_AS_STRING(msg), PyBytes_GET_SIZE(msg), digest)
    return PyBytes_FromStringAndSize(<char*>digest, digest_size)


def key_token_idsn(uint64_t key, int version):
    """(token, IDSN) of a key: first 32 / last 64 bits of its hash (RFC 8684 §3.1)."""
    return token_idsn(key, digest_size_of(version))


def join_hmac(uint64_t key1, uint64_t key2, uint32_t nonce1, uint32_t nonce2, int version,
              Py_ssize_t length):
    """Leftmost ``length`` bytes of HMAC(key1 || key2, nonce1 || nonce2) (RFC 8684 §3.2)."""
    cdef mf_hmac_key k
    cdef uint8_t key[16]
    cdef uint8_t msg[8]
    cdef uint8_t digest[32]
    cdef int n = digest_size_of(version)
    if not 0 <= length <= n:
        raise ValueError(f"length must be 0..{n}, not {length}")
    key_pair(key, key1, key2)
    put32(msg, nonce1)
    put32(msg + 4, nonce2)
    mf_hmac_init(&k, n, key, 16)
    mf_hmac(&k, msg, 8, digest)
    return PyBytes_FromStringAndSize(<char*>digest, length)


def add_addr_hmac(uint64_t key1, uint64_t key2, uint8_t address_id, bytes address, uint16_t port):
    """RFC 8684 §3.4.1: rightmost 64 bits of HMAC-SHA256(key1 || key2, id || address || port)."""
    cdef mf_hmac_key k
    cdef uint8_t key[16]
    cdef uint8_t msg[19]
    cdef uint8_t digest[32]
    check_address(address)                 # before it is copied into msg
    cdef size_t mlen = add_addr_message(msg, address_id, <const uint8_t*>PyBytes_AS_STRING(address),
                                        PyBytes_GET_SIZE(address), port)
    key_pair(key, key1, key2)
    mf_hmac_init(&k, 32, key, 16)
    mf_hmac(&k, msg, mlen, digest)
    return PyBytes_FromStringAndSize(<char*>digest + 24, 8)


def add_addr2_hmac(uint64_t key, uint8_t address_id, bytes address, int port):
    """ADD_ADDR2 (docs/add-addr2.md): leftmost 64 bits of HMAC-SHA1(key, id || address [|| port])."""
    cdef mf_hmac_key k
    cdef uint8_t keybytes[8]
    cdef uint8_t msg[19]
    cdef uint8_t digest[32]
    check_address(address)                 # before it is copied into msg
    cdef size_t mlen = add_addr_message(msg, address_id, <const uint8_t*>PyBytes_AS_STRING(address),
                                        PyBytes_GET_SIZE(address), port)
    put64(keybytes, key)
    mf_hmac_init(&k, 20, keybytes, 8)
    mf_hmac(&k, msg, mlen, digest)
    return PyBytes_FromStringAndSize(<char*>digest, 8)


# ------------------------------------------------------------------------------------------------
# the keyed hash of a connection's addresses and ports (RFC 6528 §3's F)

cdef enum:
    MAX_PURPOSE = 8     # purpose || 16 || 2 || 16 || 2 bytes: within one HMAC block's 55

cdef inline int port16(str name, object port) except -1:
    """A port as the pure twin takes it: a Python int in 0..65535, or what _check.uint takes
    (a numpy integer); anything else raises there, with the pure twin's message."""
    if type(port) is int and 0 <= port <= 0xFFFF:
        return port
    return _check.uint(name, port, 16)

cdef inline Py_ssize_t put_address(uint8_t* out, str name, object address) except -1:
    """A packed address (bytes of 4 or 16: it is copied into a fixed-size buffer)."""
    if type(address) is not bytes or (PyBytes_GET_SIZE(address) != 4
                                      and PyBytes_GET_SIZE(address) != 16):
        _check.packed_address(name, address)
    memcpy(out, PyBytes_AS_STRING(address), PyBytes_GET_SIZE(address))
    return PyBytes_GET_SIZE(address)


cdef class TupleHash:
    """HMAC-SHA-256 (RFC 2104) under one secret of at most 64 bytes, its pads hashed once:
    each hash32 costs two compressions."""
    cdef mf_hmac_key key

    def __cinit__(self, secret):
        _check.exact_bytes("secret", secret)
        if PyBytes_GET_SIZE(secret) > 64:
            raise ValueError(f"the secret must be at most 64 bytes, got {len(secret)}")
        mf_hmac_init(&self.key, 32, <const uint8_t*>PyBytes_AS_STRING(secret),
                     PyBytes_GET_SIZE(secret))

    def hash32(self, purpose, local, local_port, remote, remote_port):
        """Leftmost 32 bits of HMAC(secret, purpose || local || local_port || remote ||
        remote_port), ports as 16 big-endian bits; addresses packed (4 or 16 bytes)."""
        cdef uint8_t msg[MAX_PURPOSE + 36]
        cdef uint8_t digest[32]
        cdef Py_ssize_t n
        if type(purpose) is not bytes:
            _check.exact_bytes("purpose", purpose)
        n = PyBytes_GET_SIZE(purpose)
        if n > MAX_PURPOSE:
            raise ValueError(f"purpose must be at most {MAX_PURPOSE} bytes, got {n}")
        memcpy(msg, PyBytes_AS_STRING(purpose), n)
        n += put_address(msg + n, "local", local)
        put16(msg + n, port16("local_port", local_port))
        n += 2
        n += put_address(msg + n, "remote", remote)
        put16(msg + n, port16("remote_port", remote_port))
        mf_hmac(&self.key, msg, n + 2, digest)
        return be32(digest)


# ------------------------------------------------------------------------------------------------
# per-connection key context: the key pads are hashed once

cdef class ContextState:
    """Prepared HMAC keys of one connection: both key orders, and each key alone (ADD_ADDR2).
    The ADD_ADDR2 keys are prepared on first use: only that profile's connections need them."""
    cdef mf_hmac_key local_remote
    cdef mf_hmac_key remote_local
    cdef mf_hmac_key add_addr_local      # SHA-256 pair keys for ADD_ADDR (v1 only)
    cdef mf_hmac_key add_addr_remote
    cdef mf_hmac_key local_only          # SHA-1, each key alone: ADD_ADDR2
    cdef mf_hmac_key remote_only
    cdef bint single_keys_ready
    cdef uint64_t local_key, remote_key


cdef inline tuple token_idsn(uint64_t key, int n):
    """(token, IDSN) of a key: first 32 / last 64 bits of its hash (RFC 8684 §3.1)."""
    cdef uint8_t msg[8]
    cdef uint8_t digest[32]
    put64(msg, key)
    mf_hash_short(n, msg, 8, digest)
    return be32(digest), be64(digest + n - 8)


def new_context(uint64_t local_key, uint64_t remote_key, int version):
    """(state, local token, local IDSN, remote token, remote IDSN): all that a KeyContext
    needs, in one call."""
    cdef ContextState s = ContextState.__new__(ContextState)
    cdef int n = digest_size_of(version)
    cdef uint8_t key[16]
    s.local_key = local_key
    s.remote_key = remote_key
    key_pair(key, local_key, remote_key)
    mf_hmac_init(&s.local_remote, n, key, 16)
    key_pair(key, remote_key, local_key)
    mf_hmac_init(&s.remote_local, n, key, 16)
    if n == 32:            # v1: ADD_ADDR is keyed as MP_JOIN is (RFC 8684 §3.4.1, §3.2)
        s.add_addr_local = s.local_remote
        s.add_addr_remote = s.remote_local
    else:                  # v0 joins with SHA-1; ADD_ADDR's HMAC stays SHA-256
        mf_hmac_init(&s.add_addr_remote, 32, key, 16)
        key_pair(key, local_key, remote_key)
        mf_hmac_init(&s.add_addr_local, 32, key, 16)
    local_token, local_idsn = token_idsn(local_key, n)
    remote_token, remote_idsn = token_idsn(remote_key, n)
    return s, local_token, local_idsn, remote_token, remote_idsn


cdef const mf_hmac_key* single_key(ContextState state, bint local) noexcept:
    """The SHA-1 key of ADD_ADDR2 (one side's key alone), prepared the first time it is asked."""
    cdef uint8_t key[8]
    if not state.single_keys_ready:
        put64(key, state.local_key)
        mf_hmac_init(&state.local_only, 20, key, 8)
        put64(key, state.remote_key)
        mf_hmac_init(&state.remote_only, 20, key, 8)
        state.single_keys_ready = True
    return &state.local_only if local else &state.remote_only


def context_join(ContextState state, bint local_first, uint32_t nonce1, uint32_t nonce2,
                 Py_ssize_t length):
    """Leftmost ``length`` bytes of the MP_JOIN HMAC keyed local||remote (or remote||local)."""
    cdef uint8_t msg[8]
    cdef uint8_t digest[32]
    if state is None:                      # its key pads are read through the pointer
        _check.instance("state", state, ContextState)
    cdef const mf_hmac_key* k = &state.local_remote if local_first else &state.remote_local
    if not 0 <= length <= k.digest_size:
        raise ValueError(f"length must be 0..{k.digest_size}, not {length}")
    put32(msg, nonce1)
    put32(msg + 4, nonce2)
    mf_hmac(k, msg, 8, digest)
    return PyBytes_FromStringAndSize(<char*>digest, length)


def context_verify_join(ContextState state, bint local_first, uint32_t nonce1, uint32_t nonce2,
                        bytes received):
    """Constant-time check of a received (truncated) MP_JOIN HMAC."""
    cdef uint8_t msg[8]
    cdef uint8_t digest[32]
    if state is None or received is None:  # both are read through their pointers
        _check.instance("state", state, ContextState)
        _check.exact_bytes("received", received)
    cdef const mf_hmac_key* k = &state.local_remote if local_first else &state.remote_local
    cdef Py_ssize_t n = PyBytes_GET_SIZE(received)
    if n == 0 or n > k.digest_size:
        return False
    put32(msg, nonce1)
    put32(msg + 4, nonce2)
    mf_hmac(k, msg, 8, digest)
    return mf_equal_ct(digest, <const uint8_t*>PyBytes_AS_STRING(received), n) != 0


def context_add_addr(ContextState state, bint local_sender, uint8_t address_id, bytes address,
                     int port, bint addaddr2):
    """ADD_ADDR HMAC sent by us (local_sender) or by the peer: v1 or ADD_ADDR2 profile."""
    cdef uint8_t msg[19]
    cdef uint8_t digest[32]
    cdef size_t mlen
    if state is None:
        _check.instance("state", state, ContextState)
    check_address(address)                 # a forged 200-byte address must not reach msg[19]
    if addaddr2:
        mlen = add_addr_message(msg, address_id, <const uint8_t*>PyBytes_AS_STRING(address),
                                PyBytes_GET_SIZE(address), port)
        mf_hmac(single_key(state, local_sender), msg, mlen, digest)
        return PyBytes_FromStringAndSize(<char*>digest, 8)
    mlen = add_addr_message(msg, address_id, <const uint8_t*>PyBytes_AS_STRING(address),
                            PyBytes_GET_SIZE(address), port if port >= 0 else 0)
    mf_hmac(&state.add_addr_local if local_sender else &state.add_addr_remote, msg, mlen, digest)
    return PyBytes_FromStringAndSize(<char*>digest + 24, 8)


# ------------------------------------------------------------------------------------------------
# batches over numpy arrays (validated and made contiguous by mptcp_fast.wire.crypto)

def token_idsn_batch(const uint64_t[::1] keys, int version):
    cdef Py_ssize_t i, count = keys.shape[0]
    cdef int n = digest_size_of(version)
    tokens = np.empty(count, dtype=np.uint32)
    idsns = np.empty(count, dtype=np.uint64)
    cdef uint32_t[::1] tok = tokens
    cdef uint64_t[::1] ids = idsns
    cdef uint8_t msg[8]
    cdef uint8_t digest[32]
    with nogil:
        for i in range(count):
            put64(msg, keys[i])
            mf_hash_short(n, msg, 8, digest)
            tok[i] = <uint32_t>(be64(digest) >> 32)
            ids[i] = be64(digest + n - 8)
    return tokens, idsns


cdef inline void join_key_and_message(int n, uint64_t key1, uint64_t key2, uint32_t nonce1,
                                      uint32_t nonce2, mf_hmac_key* k, uint8_t* msg) noexcept nogil:
    cdef uint8_t key[16]
    key_pair(key, key1, key2)
    put32(msg, nonce1)
    put32(msg + 4, nonce2)
    mf_hmac_init(k, n, key, 16)


cdef void join_hmacs(int n, const uint64_t* keys1, const uint64_t* keys2, const uint32_t* nonces1,
                     const uint32_t* nonces2, Py_ssize_t count, uint8_t* digests) noexcept nogil:
    """The whole MP_JOIN HMAC of every item into digests[32 * i]; items go in pairs so that
    the two hashes interleave on the SHA unit (pyx/mf_sha.h)."""
    cdef mf_hmac_key ka, kb
    cdef uint8_t ma[8]
    cdef uint8_t mb[8]
    cdef Py_ssize_t i = 0
    while i + 1 < count:
        join_key_and_message(n, keys1[i], keys2[i], nonces1[i], nonces2[i], &ka, ma)
        join_key_and_message(n, keys1[i + 1], keys2[i + 1], nonces1[i + 1], nonces2[i + 1], &kb, mb)
        mf_hmac2(&ka, ma, 8, digests + 32 * i, &kb, mb, 8, digests + 32 * (i + 1))
        i += 2
    if i < count:
        join_key_and_message(n, keys1[i], keys2[i], nonces1[i], nonces2[i], &ka, ma)
        mf_hmac(&ka, ma, 8, digests + 32 * i)


cdef enum:
    CHUNK = 256   # items hashed per step into a stack buffer

def join_hmac_batch(const uint64_t[::1] keys1 not None, const uint64_t[::1] keys2 not None,
                    const uint32_t[::1] nonces1 not None, const uint32_t[::1] nonces2 not None,
                    int version, Py_ssize_t length):
    """(n, length) array of the leftmost bytes of each MP_JOIN HMAC."""
    cdef Py_ssize_t i, j, step, count = keys1.shape[0]
    cdef int n = digest_size_of(version)
    cdef uint8_t digests[32 * CHUNK]
    check_batch(count, keys1.shape[0], keys2.shape[0], nonces1.shape[0], nonces2.shape[0])
    if not 0 <= length <= n:               # copied out of a digest of n bytes
        raise ValueError(f"length must be 0..{n}, not {length}")
    out = np.empty((count, length), dtype=np.uint8)
    cdef uint8_t[:, ::1] o = out
    with nogil:
        i = 0
        while i < count:
            step = min(<Py_ssize_t>CHUNK, count - i)
            join_hmacs(n, &keys1[i], &keys2[i], &nonces1[i], &nonces2[i], step, digests)
            for j in range(step):
                memcpy(&o[i + j, 0], digests + 32 * j, length)
            i += step
    return out


def verify_join_batch(const uint8_t[:, ::1] received not None, const uint64_t[::1] keys1 not None,
                      const uint64_t[::1] keys2 not None, const uint32_t[::1] nonces1 not None,
                      const uint32_t[::1] nonces2 not None, int version):
    """Boolean array: each received truncated HMAC equals the leftmost bytes of its HMAC."""
    cdef Py_ssize_t i, j, step, count = keys1.shape[0], width = received.shape[1]
    cdef int n = digest_size_of(version)
    cdef uint8_t digests[32 * CHUNK]
    check_batch(received.shape[0], count, keys2.shape[0], nonces1.shape[0], nonces2.shape[0])
    if not 0 <= width <= n:                # compared with a digest of n bytes
        raise ValueError(f"received HMACs must be 0..{n} bytes wide, not {width}")
    result = np.empty(count, dtype=np.bool_)
    cdef bool8[::1] r = result
    with nogil:
        i = 0
        while i < count:
            step = min(<Py_ssize_t>CHUNK, count - i)
            join_hmacs(n, &keys1[i], &keys2[i], &nonces1[i], &nonces2[i], step, digests)
            for j in range(step):
                r[i + j] = mf_equal_ct(digests + 32 * j, &received[i + j, 0], width)
            i += step
    return result


def add_addr_hmac_batch(const uint64_t[::1] keys1 not None, const uint64_t[::1] keys2 not None,
                        const uint8_t[::1] address_ids not None,
                        const uint8_t[:, ::1] addresses not None, const uint16_t[::1] ports not None):
    """(n, 8) array of RFC 8684 ADD_ADDR HMACs (rightmost 64 bits); port 0 = no port."""
    cdef Py_ssize_t i, count = keys1.shape[0], alen = addresses.shape[1]
    cdef mf_hmac_key k
    cdef uint8_t key[16]
    cdef uint8_t msg[19]
    cdef uint8_t digest[32]
    cdef size_t mlen
    check_batch(count, keys2.shape[0], address_ids.shape[0], addresses.shape[0], ports.shape[0])
    if alen != 4 and alen != 16:           # each row is copied into msg[19]
        raise ValueError(f"address must be 4 or 16 bytes, got {alen}")
    out = np.empty((count, 8), dtype=np.uint8)
    cdef uint8_t[:, ::1] o = out
    with nogil:
        for i in range(count):
            key_pair(key, keys1[i], keys2[i])
            mlen = add_addr_message(msg, address_ids[i], &addresses[i, 0], alen, ports[i])
            mf_hmac_init(&k, 32, key, 16)
            mf_hmac(&k, msg, mlen, digest)
            memcpy(&o[i, 0], digest + 24, 8)
    return out
