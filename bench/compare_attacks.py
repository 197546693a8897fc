"""Memory per connection and per attack, and SYN-cookie handshakes per second.

    python bench/compare_attacks.py              # the active backend
    MPTCP_FAST_PURE=1 python bench/compare_attacks.py

Memory is what tracemalloc sees the engine allocate (Python objects and buffers), measured as
the growth over the attack (or per connection); the peer of each figure is the same attack
with the defence off where there is one (SYN cookies off: every SYN keeps a connection).
"""

from __future__ import annotations

import sys
import time
import tracemalloc

sys.path.insert(0, "tests")

from enginenet import C0, PORT, S0, drain, pump  # noqa: E402
from mptcp_fast import BACKEND  # noqa: E402
from mptcp_fast.wire import options as opt  # noqa: E402
from mptcp_fast.wire import packet as pk  # noqa: E402
from mptcp_fast.engine import Config, Endpoint  # noqa: E402


def measure(action) -> tuple[int, float]:
    """(peak bytes allocated during ``action()``, its wall seconds)."""
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    action()
    elapsed = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return peak, elapsed


def idle_connections(n: int = 200) -> float:
    client = Endpoint([C0], Config())
    server = Endpoint([S0], Config())
    server.listen(PORT)

    def run():
        for i in range(n):
            client.connect((S0, PORT), i * 0.001)
        pump(client, server, 0.0, until=1.0)
        drain(client), drain(server)
    peak, _ = measure(run)
    assert len(server.connections) == n
    return peak / n


def syn_flood(n: int, backlog: int) -> tuple[int, float, int]:
    server = Endpoint([S0], Config(syn_backlog=backlog))
    server.listen(PORT)
    syns = [pk.build_packet(f"198.18.{64 + i % 64}.{1 + i // 64 % 250}", S0, 1024 + i % 60000,
                            PORT, i * 2654435761 % (1 << 32), 0, pk.SYN, 65535,
                            options=opt.encode_tcp_options([opt.Mss(1460), opt.MpCapable(1)]))
            for i in range(n)]

    def run():
        for i, syn in enumerate(syns):
            server.receive_packet(syn, 0.00001 * i)
            server.packets_to_send(0.0)
    peak, elapsed = measure(run)
    return peak, n / elapsed, len(server.connections)


def cookie_handshakes(n: int, backlog: int) -> float:
    """Full handshakes per second (SYN, SYN/ACK, third ACK) of n clients, one at a time."""
    server = Endpoint([S0], Config(syn_backlog=backlog))
    server.listen(PORT)
    client = Endpoint([C0], Config())
    started = time.perf_counter()
    for _ in range(n):
        client.connect((S0, PORT), 0.0)
        for packet in client.packets_to_send(0.0):
            server.receive_packet(packet, 0.0)
        for packet in server.packets_to_send(0.0):
            client.receive_packet(packet, 0.0)
        for packet in client.packets_to_send(0.0):
            server.receive_packet(packet, 0.0)
        server.packets_to_send(0.0)
    elapsed = time.perf_counter() - started
    assert len(server.connections) == n
    return n / elapsed


def join_flood(n: int = 10_000) -> int:
    client = Endpoint([C0], Config())
    server = Endpoint([S0], Config())
    server.listen(PORT)
    client.connect((S0, PORT), 0.0)
    pump(client, server)
    token = next(iter(server.connections.values())).local_token
    syns = [pk.build_packet(C0, S0, 20000 + i % 40000, PORT, i * 7919, 0, pk.SYN, 65535,
                            options=opt.encode_tcp_options([opt.MpJoinSyn(1, token, i)]))
            for i in range(n)]

    def run():
        for syn in syns:
            server.receive_packet(syn, 1.0)
            server.packets_to_send(1.0)
    return measure(run)[0]


def add_addr_storm(n: int = 10_000) -> int:
    client = Endpoint([C0], Config())
    server = Endpoint([S0], Config())
    server.listen(PORT)
    conn = client.connect((S0, PORT), 0.0)
    conn.send(b"x")
    pump(client, server)
    server_conn = next(iter(server.connections.values()))
    sf, ssf = conn.subflows[0], server_conn.subflows[0]
    packets = []
    for i in range(n):
        address = f"198.18.{100 + i % 100}.{1 + i // 100 % 250}"
        option = opt.AddAddr(i % 256, address, None,
                             server_conn.keys.add_addr_hmac(i % 256, address))
        packets.append(pk.build_packet(S0, C0, PORT, sf.lport, (ssf.iss + ssf.snd_nxt) & 0xFFFFFFFF,
                                       (sf.iss + sf.snd_nxt) & 0xFFFFFFFF, pk.ACK, 1000,
                                       options=opt.encode_tcp_options([option])))

    def run():
        for packet in packets:
            client.receive_packet(packet, 1.0)
            client.packets_to_send(1.0)
    return measure(run)[0]


def main() -> None:
    print(f"backend {BACKEND}")
    print(f"  memory per idle established connection (both endpoints' share, 200 connections): "
          f"{idle_connections():,.0f} bytes")
    for backlog, label in ((256, "SYN cookies (backlog 256)"), (1 << 20, "no cookies")):
        peak, rate, kept = syn_flood(20_000, backlog)
        print(f"  SYN flood of 20,000 spoofed SYNs, {label}: peak +{peak / 2**20:.1f} MiB, "
              f"{rate:,.0f} SYNs/s answered, {kept:,} connections kept")
    for backlog, label in ((0, "every one by SYN cookie"), (1 << 20, "stateful")):
        print(f"  full handshakes, {label}: {cookie_handshakes(2000, backlog):,.0f} per second")
    print(f"  MP_JOIN flood of 10,000 SYNs on one token: peak +{join_flood() / 2**20:.2f} MiB")
    print(f"  ADD_ADDR storm of 10,000 valid announcements: peak +{add_addr_storm() / 2**20:.2f} MiB")


if __name__ == "__main__":
    main()
