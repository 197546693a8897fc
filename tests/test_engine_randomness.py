"""Every random number an endpoint draws comes from its one RandomSource (engine/randomness.py):
the OS CSPRNG by default, a seeded one replays a run to the bit."""

from __future__ import annotations

import pytest

from mptcp_fast.engine import Config, Endpoint, RandomSource

from enginenet import drain, pump

C0, C1, S0 = "198.18.0.1", "198.18.1.1", "198.18.0.2"
PORT = 5000


def test_the_default_source_is_the_os_csprng(backend):
    a, b = Endpoint([C0]), Endpoint([C0])
    assert a.random.secure and b.random.secure and not RandomSource.seeded(1).secure
    assert a.connect((S0, PORT), 0.0).local_key != b.connect((S0, PORT), 0.0).local_key


def test_a_seeded_source_gives_the_same_keys_isns_ports_and_packets(backend):
    """Two endpoints with one seed draw the same key, ISN secret and port: their SYNs are the
    same bytes (a different seed, different ones)."""
    def first_syn(seed: int):
        endpoint = Endpoint([C0], Config(), random=RandomSource.seeded(seed))
        conn = endpoint.connect((S0, PORT), 0.0)
        return conn.local_key, endpoint.packets_to_send(0.0)
    assert first_syn(7) == first_syn(7)
    assert first_syn(7) != first_syn(8)


def test_join_nonces_come_from_the_source(backend):
    """Both MP_JOIN nonces (RFC 8684 §3.2) are the endpoints' draws: seeded, a join replays."""
    def nonces(seed: int):
        client = Endpoint([C0, C1], Config(), random=RandomSource.seeded(seed))
        server = Endpoint([S0], Config(), random=RandomSource.seeded(seed + 1))
        server.listen(PORT)
        conn = client.connect((S0, PORT), 0.0)
        conn.send(b"x" * 1000)             # its DATA_ACK makes the client fully established
        pump(client, server, 0.0, until=1.0)
        drain(client)
        server_conn = next(iter(server.connections.values()))
        joined = [sf.join for sf in conn.all_subflows + server_conn.all_subflows
                  if sf.join is not None]
        assert len(joined) == 2
        return [(j.local_nonce, j.remote_nonce) for j in joined]
    assert nonces(3) == nonces(3)


def test_only_a_random_source_is_taken(backend):
    with pytest.raises(TypeError, match="RandomSource"):
        Endpoint([C0], Config(), random=1)
