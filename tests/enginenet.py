"""A client and a server engine in the emulated network, for the engine's tests."""

from __future__ import annotations

import dataclasses

from mptcp_fast import options as opt
from mptcp_fast import packet as pk
from mptcp_fast.engine import Config, Endpoint
from mptcp_fast.engine.apps import BulkApp
from mptcp_fast.netem import Network

C0, C1, C2 = "198.18.0.1", "198.18.1.1", "198.18.2.1"
S0, S1 = "198.18.0.2", "198.18.1.2"
PORT = 5000
FAST = dict(time_wait=0.5, delayed_ack=0.04)


@dataclasses.dataclass
class Run:
    net: Network
    client: BulkApp
    server: BulkApp
    conn: object
    end: float

    @property
    def up(self):
        """(client's transfer, server's transfer) of the one connection."""
        return self.client.transfers[self.conn.id], next(iter(self.server.transfers.values()))

    def check_exact(self, up_bytes: int, down_bytes: int) -> None:
        """Every byte arrived, in order, both ways (SHA-256 of the streams)."""
        c, s = self.up
        assert (c.sent, s.received) == (up_bytes, up_bytes)
        assert (s.sent, c.received) == (down_bytes, down_bytes)
        assert s.received_hash.hexdigest() == c.sent_hash.hexdigest()
        assert c.received_hash.hexdigest() == s.sent_hash.hexdigest()
        assert c.eof and s.eof

    def subflow_bytes(self, side="client"):
        conn = self.conn if side == "client" else next(iter(self.server.transfers.values())).conn
        return {sf.sid: sf.bytes_sent for sf in conn.all_subflows}


def make(paths, *, up=0, down=0, client_addresses=(C0, C1), server_addresses=(S0,),
         config=None, server_config=None, seed=1, pcap=None, **fast):
    cfg = config or Config(**{**FAST, **fast})
    net = Network(seed=seed, pcap=pcap)
    client = BulkApp(Endpoint(list(client_addresses), cfg), send_bytes=up, seed=seed)
    server = BulkApp(Endpoint(list(server_addresses), server_config or cfg), send_bytes=down,
                     seed=seed + 1)
    server.endpoint.listen(PORT)
    net.add_host(client, client_addresses)
    net.add_host(server, server_addresses)
    made = {}
    for (a, b), kwargs in paths.items():
        made[(a, b)] = net.add_path(a, b, **{"offload": cfg.offload, **kwargs})
    return net, client, server, made


def finished(client, server):
    def stop():
        if not client.transfers or not server.transfers:
            return False
        return all(t.done for t in client.transfers.values()) and \
            all(t.done for t in server.transfers.values())
    return stop


def transfer(paths, *, up=0, down=0, until=120.0, settle=True, before_run=None, **kwargs) -> Run:
    """Open one connection, move ``up`` bytes to the server and ``down`` back, run until both
    streams ended (and, with ``settle``, until everything closed)."""
    net, client, server, made = make(paths, up=up, down=down, **kwargs)
    conn = client.open((S0, PORT), 0.0)
    if before_run is not None:
        before_run(net, client, server, made, conn)
    end = net.run(until=until, stop=finished(client, server))
    if settle:
        end = net.run(until=end + 30.0)
    net.close()
    return Run(net, client, server, conn, end)


# -- two endpoints joined directly, packet by packet (no emulated network)

def pump(a, b, now=0.0, until=None, mutate=None, step=0.001):
    """Move packets between two endpoints (``step`` seconds apart), and fire their timers when
    they are quiet, up to ``until`` (half a second on by default); ``mutate(packet, sender)``
    may return a replacement (or None to drop it). Returns every packet, as (sender, bytes)."""
    until = now + 0.5 if until is None else until
    seen = []
    while now <= until:
        moved = False
        for src, dst in ((a, b), (b, a)):
            for packet in src.packets_to_send(now):
                seen.append((src, packet))
                if mutate is not None:
                    packet = mutate(packet, src)
                    if packet is None:
                        continue
                dst.receive_packet(packet, now)
                moved = True
        if moved:
            now += step
            continue
        timers = [t for t in (a.get_timer(), b.get_timer()) if t is not None]
        if not timers or min(timers) > until:
            break
        now = max(now, min(timers))
        for ep in (a, b):
            if ep.get_timer() is not None and ep.get_timer() <= now:
                ep.handle_timer(now)
    return seen


def options_of(packet):
    p = pk.parse_packet(packet)
    return opt.parse_tcp_options(bytes(p.options(packet)))


def drain(ep):
    out = []
    while (e := ep.next_event()) is not None:
        out.append(e)
    return out


class SharedAddress:
    """Several apps behind one address (as if on one host): packets go to the app whose
    endpoint has a subflow on the destination port. Lets flows of different endpoints share
    one emulated path (one bottleneck)."""

    def __init__(self, *apps):
        self.apps = apps

    def _owner(self, data):
        dport = pk.parse_packet(data).dport
        for app in self.apps:
            if any(sf.lport == dport for sf in app.endpoint._subflows.values()):
                return app
        return self.apps[0]

    def receive_packet(self, data, now):
        self._owner(data).receive_packet(data, now)

    def packets_to_send(self, now):
        return [p for app in self.apps for p in app.packets_to_send(now)]

    def get_timer(self):
        timers = [t for t in (app.get_timer() for app in self.apps) if t is not None]
        return min(timers) if timers else None

    def handle_timer(self, now):
        for app in self.apps:
            when = app.get_timer()
            if when is not None and when <= now:
                app.handle_timer(now)
