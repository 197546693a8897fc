"""TCP Fast Open (RFC 7413) in the engine, MPTCP v1 as RFC 8684 Appendix B and Linux do it,
engine to engine on both backends: the cookie request and the cookie, data in the MP_CAPABLE
SYN taken and delivered at the SYN, byte for byte; a forged, foreign or expired cookie gets no
data taken (they come once, after the handshake) and a fresh cookie; a path that drops SYNs
with data gets the SYN again without them, and the server left alone for a while; a SYN with
data again (retransmitted, replayed) never delivers its data twice; v0 never does TFO."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from mptcp_fast import _backend
from mptcp_fast.engine import Config, Endpoint, RandomSource, events as ev
from mptcp_fast.engine.cookies import FASTOPEN_PERIOD
from mptcp_fast.engine.fastopen import MAX_SERVERS, ServerCache
from mptcp_fast.sim.netem import Network
from mptcp_fast.wire import options as opt, packet as pk

from enginenet import drain, options_of, pump

C0, C1, S0 = "198.18.0.1", "198.18.1.1", "198.18.0.2"
S0_PACKED = bytes([198, 18, 0, 2])
PORT = 5000
TFO = 34


def _tfo(packet):
    """The TFO option's cookie in ``packet`` (b"": a request), or None."""
    found = [o.data for o in options_of(packet) if type(o) is opt.UnknownTcpOption and o.kind == TFO]
    return found[0] if found else None


def _is_syn(packet) -> bool:
    return pk.parse_packet(packet).flags & (pk.SYN | pk.ACK) == pk.SYN


def _payload(packet) -> bytes:
    p = pk.parse_packet(packet)
    return bytes(p.payload(packet))


def _received(events) -> bytes:
    return b"".join(e.data for e in events if type(e) is ev.DataReceived)


def _endpoints(client_config=None, server_config=None, seed=None):
    config = Config(fastopen=True, time_wait=0.1)
    random = (RandomSource.seeded(seed), RandomSource.seeded(seed + 1)) if seed is not None \
        else (None, None)
    client = Endpoint([C0, C1], client_config or config, random=random[0])
    server = Endpoint([S0], server_config or config, random=random[1])
    server.listen(PORT)
    return client, server


@pytest.fixture
def pair(backend):
    return _endpoints()


def _with_cookie(client, server, now=0.0):
    """A first connection that asks for a cookie (its data go after the handshake)."""
    conn = client.connect((S0, PORT), now, data=b"first")
    pump(client, server, now, until=now + 1.0)
    assert _received(drain(server)) == b"first"
    return conn


# ---------------------------------------------------------------- the usual course
def test_cookie_request_then_data_in_the_syn(pair):
    client, server = pair
    client.connect((S0, PORT), 0.0, data=b"first")
    syn = client.packets_to_send(0.0)[0]
    # the first SYN asks for a cookie (an empty option, RFC 7413 §4.1.1) and carries no data
    assert _tfo(syn) == b"" and _payload(syn) == b""
    assert any(type(o) is opt.MpCapable for o in options_of(syn))
    server.receive_packet(syn, 0.0)
    synack = server.packets_to_send(0.0)[0]
    cookie = _tfo(synack)
    assert cookie is not None and len(cookie) == 8
    # a SYN/ACK with a cookie has no room for timestamps (RFC 8684 App. B.1, as Linux)
    assert not any(type(o) is opt.Timestamps for o in options_of(synack))
    client.receive_packet(synack, 0.01)
    pump(client, server, 0.01, until=1.0)
    assert _received(drain(server)) == b"first"
    assert client.stats["fastopen_cookies_received"] == 1

    # the second connection's MP_CAPABLE SYN carries the cookie and the data
    message = bytes(range(256)) * 4
    conn = client.connect((S0, PORT), 2.0, data=message + b"rest")
    syn = client.packets_to_send(2.0)[0]
    assert _tfo(syn) == cookie and _payload(syn) == message + b"rest"
    server.receive_packet(syn, 2.0)
    # taken at the SYN: the application hears of the connection and reads the data at once
    early = drain(server)
    assert [type(e) for e in early] == [ev.ConnectionEstablished, ev.DataReceived]
    assert early[1].data == message + b"rest"
    synack = server.packets_to_send(2.0)[0]
    p = pk.parse_packet(synack)
    assert p.ack == (pk.parse_packet(syn).seq + 1 + len(message) + 4) & 0xFFFFFFFF
    assert _tfo(synack) is None                   # a valid cookie is not sent again
    assert any(type(o) is opt.Timestamps for o in options_of(synack))
    client.receive_packet(synack, 2.01)
    conn.send(b" and more")
    pump(client, server, 2.01, until=3.0)
    later = drain(server)
    assert ev.ConnectionEstablished not in [type(e) for e in later]   # told once
    assert _received(later) == b" and more"
    assert server.stats["fastopen_accepted"] == 1
    assert client.stats["fastopen_syn_data_acked"] == 1
    assert conn.stats()["fastopen_taken"] == len(message) + 4
    assert next(iter(server.connections.values())).stats()["fastopen_taken"] == 0  # (the 1st)


def test_the_data_after_the_syns_are_mapped_from_idsn_plus_one(pair):
    """RFC 8684 App. B.2 (errata 6609's figure): the SYN's data are outside the data sequence
    space; the next byte has DSN IDSN + 1 and relative subflow sequence number 1."""
    client, server = pair
    _with_cookie(client, server)
    conn = client.connect((S0, PORT), 2.0, data=b"x" * 100)
    pump(client, server, 2.0, until=2.1)
    conn.send(b"y" * 50)
    seen = pump(client, server, 2.1, until=3.0)
    first = [o for s, p in seen if s is client for o in options_of(p)
             if type(o) is opt.MpCapable and o.data_len]
    assert first and first[0].data_len == 50
    data = [p for s, p in seen if s is client and _payload(p)]
    server_conn = next(c for c in server.connections.values() if c.fastopen and c.fastopen.taken)
    syn_seq = (server_conn.subflows[0].irs - 100) & 0xFFFFFFFF
    assert pk.parse_packet(data[0]).seq == (syn_seq + 101) & 0xFFFFFFFF
    assert _received(drain(server)) == b"x" * 100 + b"y" * 50
    assert server_conn.remote_first_dsn == (server_conn.keys.remote_idsn + 1) & ((1 << 64) - 1)


def test_fastopen_over_ipv6(backend):
    config = Config(fastopen=True)
    client, server = Endpoint(["2001:2::1"], config), Endpoint(["2001:2::2"], config)
    server.listen(PORT)
    client.connect(("2001:2::2", PORT), 0.0, data=b"v6 first")
    pump(client, server, 0.0, until=1.0)
    assert _received(drain(server)) == b"v6 first"
    message = b"v6 in the SYN" * 200
    client.connect(("2001:2::2", PORT), 2.0, data=message)
    syn = client.packets_to_send(2.0)[0]
    assert len(_payload(syn)) == 1440 - 40          # the IPv6 MSS less a full options area
    server.receive_packet(syn, 2.0)
    assert _received(drain(server)) == message[:1400]
    pump(client, server, 2.0, until=3.0)
    assert _received(drain(server)) == message[1400:]


def test_a_server_that_takes_part_of_the_syns_data_gets_the_rest_mapped(backend):
    """The SYN/ACK may acknowledge a prefix of the SYN's data (RFC 7413 §4.2.2): here a server
    whose MSS (600) is below what the client's SYN carried takes 600 bytes; the client sends
    the rest after the handshake from DSN IDSN + 1, subflow sequence 1 after the 600."""
    client, server = _endpoints(server_config=Config(fastopen=True, mss=600))
    _with_cookie(client, server)
    cookie = client.fastopen.servers.plan(S0_PACKED, 1.0)[0]
    client.fastopen.servers.learned(S0_PACKED, cookie, 1460)    # (as if it said 1460)
    message = bytes(range(251)) * 8
    conn = client.connect((S0, PORT), 2.0, data=message)
    syn = client.packets_to_send(2.0)[0]
    assert len(_payload(syn)) == 1420
    server.receive_packet(syn, 2.0)
    assert _received(drain(server)) == message[:600]
    pump(client, server, 2.0, until=3.0)
    assert _received(drain(server)) == message[600:]
    assert conn.stats()["fastopen_taken"] == 600


# ---------------------------------------------------------------- cookies that are not good
def test_a_forged_cookie_gets_no_data_taken_and_the_data_come_once(pair):
    client, server = pair
    client.fastopen.servers.learned(S0_PACKED, b"\x00" * 8, 1460)
    client.connect((S0, PORT), 0.0, data=b"payload")
    syn = client.packets_to_send(0.0)[0]
    assert _tfo(syn) == b"\x00" * 8 and _payload(syn) == b"payload"
    server.receive_packet(syn, 0.0)
    assert drain(server) == []                    # nothing before the handshake
    synack = server.packets_to_send(0.0)[0]
    assert pk.parse_packet(synack).ack == (pk.parse_packet(syn).seq + 1) & 0xFFFFFFFF
    fresh = _tfo(synack)
    assert fresh and fresh != b"\x00" * 8         # a fresh cookie instead
    client.receive_packet(synack, 0.01)
    pump(client, server, 0.01, until=1.0)
    assert _received(drain(server)) == b"payload"  # after the handshake, once
    assert server.stats["fastopen_cookies_refused"] == 1 and not server.stats["fastopen_accepted"]
    # the fresh cookie works
    client.connect((S0, PORT), 2.0, data=b"again")
    server.receive_packet(client.packets_to_send(2.0)[0], 2.0)
    assert _received(drain(server)) == b"again"


def test_a_cookie_is_good_only_from_the_address_it_was_given_to(pair):
    client, server = pair
    _with_cookie(client, server)
    client.connect((S0, PORT), 2.0, local_address=C1, data=b"from elsewhere")
    pump(client, server, 2.0, until=3.0)
    assert _received(drain(server)) == b"from elsewhere"
    assert server.stats["fastopen_cookies_refused"] == 1 and not server.stats["fastopen_accepted"]


@pytest.mark.parametrize("age, taken", [(FASTOPEN_PERIOD, True), (2 * FASTOPEN_PERIOD, False)],
                         ids=["previous-period", "expired"])
def test_cookies_expire_after_one_to_two_periods(pair, age, taken):
    client, server = pair
    _with_cookie(client, server)
    old = client.fastopen.servers.plan(S0_PACKED, 1.0)[0]
    now = 1.0 + age
    client.connect((S0, PORT), now, data=b"late")
    syn = client.packets_to_send(now)[0]
    assert _tfo(syn) == old
    server.receive_packet(syn, now)
    assert _received(drain(server)) == (b"late" if taken else b"")
    synack = server.packets_to_send(now)[0]
    assert _tfo(synack) not in (None, old)        # a fresh one either way
    client.receive_packet(synack, now + 0.01)
    pump(client, server, now + 0.01, until=now + 1.0)
    assert _received(drain(server)) == (b"" if taken else b"late")


# ---------------------------------------------------------------- lost SYNs, repeated SYNs
def _drop_syn_data(packet, sender):
    return None if _is_syn(packet) and _payload(packet) else packet


def test_a_path_that_drops_syn_data_gets_the_syn_again_without_them(pair):
    client, server = pair
    _with_cookie(client, server)
    client.connect((S0, PORT), 2.0, data=b"dropped by a middlebox")
    seen = pump(client, server, 2.0, until=12.0, mutate=_drop_syn_data)
    syns = [p for s, p in seen if s is client and _is_syn(p)
            and any(type(o) is opt.MpCapable for o in options_of(p))]     # (not the join's)
    assert len(syns) == 2
    assert _payload(syns[0]) and _tfo(syns[0])
    assert _payload(syns[1]) == b"" and _tfo(syns[1]) is None   # RFC 7413 §4.1.3 / Linux
    assert _received(drain(server)) == b"dropped by a middlebox"
    assert client.stats["fastopen_syn_lost"] == 1
    # the server is left alone for a while: no option at all, then TFO again
    assert client.fastopen.servers.plan(S0_PACKED, 20.0) is None
    client.connect((S0, PORT), 20.0, data=b"plain")
    syn = client.packets_to_send(20.0)[0]
    assert _tfo(syn) is None and _payload(syn) == b""
    server.receive_packet(syn, 20.0)
    pump(client, server, 20.0, until=21.0)
    assert _received(drain(server)) == b"plain"
    assert client.fastopen.servers.plan(S0_PACKED, 1000.0) is not None


def test_the_emulated_path_drops_syn_data_and_the_stream_arrives_once(backend):
    """The same through netem: a middlebox on the path drops every SYN with data."""
    client, server = _endpoints()
    net = Network(seed=3)
    net.add_host(client, [C0, C1])
    net.add_host(server, [S0])
    path = net.add_path(C0, S0, rate=10e6, delay=0.01)
    client.connect((S0, PORT), 0.0, data=b"first")
    net.run(until=2.0)
    assert _received(drain(server)) == b"first" and client.stats["fastopen_cookies_received"]
    path.middlebox = lambda packet, from_a: None if _is_syn(packet) and _payload(packet) \
        else packet
    message = bytes(range(200)) * 7
    client.connect((S0, PORT), net.now, data=message)
    net.wake(client)
    net.run(until=12.0)
    net.close()
    assert _received(drain(server)) == message
    assert client.stats["fastopen_syn_lost"] == 1 and not server.stats["fastopen_accepted"]


def test_a_syn_with_data_again_delivers_them_once(pair):
    """The SYN/ACK is lost: the client's SYN comes again (without data), and a copy of the
    first SYN with data is replayed in every state: the data were delivered once."""
    client, server = pair
    _with_cookie(client, server)
    client.connect((S0, PORT), 2.0, data=b"only once")
    syn = client.packets_to_send(2.0)[0]
    server.receive_packet(syn, 2.0)
    server.packets_to_send(2.0)                   # the SYN/ACK is lost
    server.receive_packet(syn, 2.05)              # replayed while SYN-RECEIVED
    again = server.packets_to_send(2.05)
    assert len(again) == 1 and pk.parse_packet(again[0]).flags == pk.SYN | pk.ACK
    pump(client, server, 2.05, until=4.0)
    server.receive_packet(syn, 4.0)               # replayed once established
    pump(client, server, 4.0, until=5.0)
    assert _received(drain(server)) == b"only once"
    assert server.stats["fastopen_accepted"] == 1


def test_the_synack_taking_the_data_after_a_retry_is_taken(pair):
    """The SYN with data was only late: its SYN/ACK (which took the data) comes after the
    client sent the SYN again without data: the data are not sent a second time."""
    client, server = pair
    _with_cookie(client, server)
    client.connect((S0, PORT), 2.0, data=b"late, not lost")
    syn = client.packets_to_send(2.0)[0]
    client.handle_timer(client.get_timer())       # the RTO: the SYN again, without data
    retry = client.packets_to_send(client.now)
    assert _payload(retry[0]) == b""
    server.receive_packet(syn, client.now)
    pump(client, server, client.now, until=client.now + 1.0)
    assert _received(drain(server)) == b"late, not lost"
    assert client.fastopen.servers.plan(S0_PACKED, client.now) is not None


# ---------------------------------------------------------------- bounds and odd input
def test_v0_never_does_fastopen(backend):
    config = Config(profile="v0", fastopen=True)
    client, server = _endpoints(config, config)
    for at in (0.0, 2.0):
        client.connect((S0, PORT), at, data=b"v0")
        syn = client.packets_to_send(at)[0]
        assert _tfo(syn) is None and _payload(syn) == b""
        server.receive_packet(syn, at)
        synack = server.packets_to_send(at)[0]
        assert _tfo(synack) is None
        client.receive_packet(synack, at)
        pump(client, server, at, until=at + 1.0)
    assert _received(drain(server)) == b"v0v0"


def test_a_server_without_config_fastopen_ignores_the_option(backend):
    client, server = _endpoints(server_config=Config())
    client.connect((S0, PORT), 0.0, data=b"first")
    server.receive_packet(client.packets_to_send(0.0)[0], 0.0)
    synack = server.packets_to_send(0.0)[0]
    assert _tfo(synack) is None
    assert client.fastopen.servers.plan(S0_PACKED, 0.0) == (b"", 536)
    client.receive_packet(synack, 0.0)
    pump(client, server, 0.0, until=1.0)
    assert _received(drain(server)) == b"first"
    assert client.fastopen.servers.plan(S0_PACKED, 2.0) == (b"", 1460)   # no cookie given


@pytest.mark.parametrize("length", [0, 1, 2, 3, 5, 7, 17, 18, 22])
def test_odd_options_in_a_syn_are_no_cookie(pair, length):
    """A SYN whose TFO option has a length RFC 7413 §4.1.1 does not allow (or a truncated
    one): no data taken, nothing raises; a request (length 2) gets a cookie."""
    client, server = pair
    head = opt.encode_tcp_options([opt.Mss(1460), opt.MpCapable(1, opt.MPC_HMAC)])
    tail = bytes((TFO, length)) + b"\x01" * max(0, min(length, 40 - len(head)) - 2)
    area = (head + tail)[:40]
    area += b"\x01" * (-len(area) % 4)
    syn = pk.build_packet(C0, S0, 40000, PORT, 1000, 0, pk.SYN, 65535, options=area,
                          payload=b"data")
    server.receive_packet(syn, 0.0)
    assert _received(drain(server)) == b""
    assert not server.stats["fastopen_accepted"]
    answer = server.packets_to_send(0.0)
    if length == 2:
        assert len(_tfo(answer[0])) == 8


def test_servers_that_share_a_fastopen_key_take_each_others_cookies(backend):
    """Config.fastopen_key: a cookie one endpoint gave is good at another with the same key
    (workers of one server, a restart); without it, each draws its own."""
    shared = Config(fastopen=True, fastopen_key=b"k" * 16)
    client, first = _endpoints(server_config=shared)
    _with_cookie(client, first)
    for config, taken in ((shared, True), (Config(fastopen=True), False)):
        second = Endpoint([S0], config)
        second.listen(PORT)
        client.connect((S0, PORT), 2.0, data=b"to another")
        second.receive_packet(client.packets_to_send(2.0)[0], 2.0)
        assert bool(second.stats["fastopen_accepted"]) is taken
    with pytest.raises(ValueError, match="fastopen_key"):
        Config(fastopen_key=b"short")


def test_the_client_remembers_a_bounded_number_of_servers():
    cache = ServerCache()
    for i in range(MAX_SERVERS + 50):
        cache.learned(i.to_bytes(4, "big"), b"c" * 8, 1460)
    assert len(cache) == MAX_SERVERS
    assert cache.plan((0).to_bytes(4, "big"), 0.0) == (b"", 536)        # the oldest went
    assert cache.plan((MAX_SERVERS + 49).to_bytes(4, "big"), 0.0) == (b"c" * 8, 1460)


def test_the_server_takes_syn_data_only_below_its_backlog(backend):
    client, server = _endpoints(server_config=Config(fastopen=True, fastopen_backlog=0))
    _with_cookie(client, server)
    client.connect((S0, PORT), 2.0, data=b"queued")
    server.receive_packet(client.packets_to_send(2.0)[0], 2.0)
    assert _received(drain(server)) == b""
    pump(client, server, 2.0, until=3.0)
    assert _received(drain(server)) == b"queued"
    assert server.stats["fastopen_backlog_full"] == 1


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(options=st.lists(st.one_of(
           st.binary(max_size=18).map(lambda b: bytes((TFO, len(b) + 2)) + b),
           st.binary(max_size=12)), max_size=4),
       flags=st.sampled_from([pk.SYN, pk.SYN | pk.ACK, pk.SYN | pk.FIN, pk.SYN | pk.RST]),
       payload=st.binary(max_size=2000), seq=st.integers(0, 0xFFFFFFFF))
def test_whatever_a_syn_carries_nothing_raises_and_no_data_are_taken(pair, options, flags,
                                                                      payload, seq):
    """Forged SYNs with TFO options of any length and content (a cookie the server never
    made), any flags, any payload: nothing raises out of the engine, no data are taken."""
    client, server = pair
    head = opt.encode_tcp_options([opt.Mss(1460), opt.MpCapable(1, opt.MPC_HMAC)])
    area = (head + b"".join(options))[:40]
    area += b"\x00" * (-len(area) % 4)
    syn = pk.build_packet(C0, S0, 40000, PORT, seq, 0, flags, 65535, options=area,
                          payload=payload)
    server.receive_packet(syn, 0.0)
    server.packets_to_send(0.0)
    assert _received(drain(server)) == b""
    assert not server.stats["fastopen_accepted"]


# ---------------------------------------------------------------- a property over the space
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(cookie=st.one_of(st.none(), st.just("valid"), st.binary(min_size=4, max_size=14)),
       size=st.integers(0, 3000), drop_synack=st.booleans(), drop_syn_data=st.booleans(),
       replay=st.booleans())
def test_the_server_gets_exactly_the_stream_once(backend, cookie, size, drop_synack,
                                                 drop_syn_data, replay):
    """Whatever cookie the client holds (none, the server's, random bytes of any allowed
    length), however much it sends, whatever the path drops and replays: the server's
    application gets exactly the client's bytes, once, in order; data are taken at the SYN
    only with the server's own cookie."""
    client, server = _endpoints()
    if cookie == "valid":
        _with_cookie(client, server)
    elif cookie is not None:
        client.fastopen.servers.learned(S0_PACKED, len(cookie) % 2 and cookie[1:] or cookie,
                                        1460)
    message = bytes((i * 7) & 0xFF for i in range(size))
    state = {"synack": drop_synack, "syn": None}

    def mutate(packet, sender):
        p = pk.parse_packet(packet)
        if sender is client and _is_syn(packet) and _payload(packet):
            state["syn"] = packet
            if drop_syn_data:
                return None
        if sender is server and p.flags == pk.SYN | pk.ACK and state["synack"]:
            state["synack"] = False
            return None
        return packet

    client.connect((S0, PORT), 2.0, data=message or None)
    pump(client, server, 2.0, until=12.0, mutate=mutate)
    if replay and state["syn"] is not None:
        server.receive_packet(state["syn"], 12.0)
        pump(client, server, 12.0, until=13.0)
    assert _received(drain(server)) == message
    if server.stats["fastopen_accepted"]:
        assert cookie == "valid"


# ---------------------------------------------------------------- both backends, one course
def _course(backend: str) -> list:
    with _backend.use(backend):
        client, server = _endpoints(seed=7)
        client.connect((S0, PORT), 0.0, data=b"first")
        seen = [p for _, p in pump(client, server, 0.0, until=1.0)]
        client.connect((S0, PORT), 2.0, data=b"second" * 300)
        seen += [p for _, p in pump(client, server, 2.0, until=12.0, mutate=_drop_syn_data)]
        client.connect((S0, PORT), 3000.0, data=b"third" * 10)
        seen += [p for _, p in pump(client, server, 3000.0, until=3001.0)]
        return seen + [_received(drain(server))]


def test_fastopen_takes_the_same_course_on_both_backends():
    from conftest import require
    require("compiled")
    compiled = _course("cython")
    assert compiled == _course("python")
    assert compiled[-1] == b"first" + b"second" * 300 + b"third" * 10
