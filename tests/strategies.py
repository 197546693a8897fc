"""Hypothesis strategies: every option class in every form, built through its constructor."""

from hypothesis import strategies as st

from mptcp_fast.wire import options as o

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
u64 = st.integers(0, 0xFFFFFFFFFFFFFFFF)
nibble = st.integers(0, 15)
address = st.one_of(st.binary(min_size=4, max_size=4), st.binary(min_size=16, max_size=16))
port = st.none() | u16
hmac8 = st.binary(min_size=8, max_size=8)

mp_capable = st.one_of(
    st.builds(o.MpCapable, st.integers(1, 15), u8),                               # SYN, 4
    st.builds(o.MpCapable, nibble, u8, u64),                                      # 12 (v0 too)
    st.builds(o.MpCapable, nibble, u8, u64, u64),                                 # 20 (v0 too)
    st.builds(o.MpCapable, st.integers(1, 15), u8, u64, u64, u16),                # 22
    st.builds(o.MpCapable, st.integers(1, 15), u8, u64, u64, u16, u16),           # 24
)

mp_join = st.one_of(
    st.builds(o.MpJoinSyn, u8, u32, u32, st.booleans()),
    st.builds(o.MpJoinSynAck, u8, hmac8, u32, st.booleans()),
    st.builds(o.MpJoinAck, st.binary(min_size=20, max_size=20)),
)


@st.composite
def dss(draw):
    """Every combination of A a M m F, with and without checksum (lengths 4..28)."""
    ack64, dsn64 = draw(st.booleans()), draw(st.booleans())
    data_ack = draw(st.none() | st.integers(0, (1 << (64 if ack64 else 32)) - 1))
    if draw(st.booleans()):
        mapping = dict(dsn=draw(st.integers(0, (1 << (64 if dsn64 else 32)) - 1)),
                       subflow_seq=draw(u32), data_len=draw(u16), checksum=draw(st.none() | u16))
    else:
        mapping = {}
    return o.Dss(data_ack=data_ack, ack64=ack64, dsn64=dsn64, data_fin=draw(st.booleans()), **mapping)


add_addr = st.one_of(
    st.builds(o.AddAddr, u8, address, port, st.none() | hmac8),
    st.builds(o.AddAddrV0, u8, address, port),
    st.builds(o.AddAddr2, u8, address, port, hmac8),
)

mptcp_option = st.one_of(
    mp_capable, mp_join, dss(), add_addr,
    st.builds(o.RemoveAddr, st.lists(u8, min_size=1, max_size=37)),
    st.builds(o.MpPrio, st.booleans(), st.none() | u8),
    st.builds(o.MpFail, u64),
    st.builds(o.MpFastclose, u64),
    st.builds(o.MpTcpRst, u8, st.booleans()),
    st.builds(o.MpExperimental, nibble, st.binary(max_size=37)),
    st.builds(o.UnknownMptcpOption, st.integers(9, 14), nibble, st.binary(max_size=37)),
)

tcp_option = st.one_of(
    st.builds(o.Mss, u16),
    st.builds(o.WindowScale, u8),
    st.just(o.SackPermitted()),
    st.builds(o.Sack, st.lists(st.tuples(u32, u32), min_size=1, max_size=4)),
    st.builds(o.Timestamps, u32, u32),
    st.builds(o.UnknownTcpOption, u8.filter(lambda k: k not in (0, 1, 2, 3, 4, 5, 8, 30)),
              st.binary(max_size=20)),
)

any_option = st.one_of(mptcp_option, tcp_option)


def framed_mptcp(subtype_byte: int, body: bytes) -> bytes:
    """An MPTCP option whose Length octet is right, so decoding reaches the subtype rules."""
    return bytes((30, (len(body) + 3) & 0xFF, subtype_byte)) + body


# Bytes that look like an MPTCP option: reach deep into every subtype's length rules.
mptcp_like_bytes = st.builds(framed_mptcp, u8, st.binary(max_size=40))

# What mptcp_trace.random_trace builds a conversation from.
trace_ops = st.fixed_dictionaries({
    "checksum": st.booleans(), "join": st.booleans(),
    "garbage": st.lists(st.one_of(mptcp_like_bytes, st.binary(max_size=40)),
                        min_size=1, max_size=4),
    "ops": st.lists(st.tuples(st.integers(0, 1), st.sampled_from(["up", "down"]),
                              st.sampled_from(["send", "send", "reinject", "cut", "plain",
                                               "rewind", "bad", "garbage", "skip", "ack"]),
                              st.integers(0, 300), st.integers(0, 400), st.booleans()),
                    max_size=25)})
