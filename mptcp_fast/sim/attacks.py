"""The ADD_ADDR hijack of the IETF-87 MPTCP slides, played in the emulated network.

An off-path attacker who knows a connection's 4-tuple and sequence numbers (RFC 7430 §3 lists
how they leak) injects an ADD_ADDR, apparently from the server, announcing the attacker's own
address. RFC 6824 (v0) has nothing to check it with: the client opens an MP_JOIN subflow to
the attacker, who relays it to the real server (a NAT in the middle: MP_JOIN's HMACs do not
cover addresses) and from then on sees, and could change, the traffic of that subflow. RFC 8684
(v1) and the rfc6824bis-00 ADD_ADDR2 carry an HMAC keyed with the connection's keys, which
the attacker does not have: the client drops the forgery silently and no subflow appears.

    from mptcp_fast.sim import attacks
    result = attacks.add_addr_hijack("v0")       # or "v1", "v0+add_addr2"
    result["hijacked"], result["bytes_through_attacker"], result["forged_add_addr_dropped"]
"""

from __future__ import annotations

import random

from ..wire import options as opt
from ..wire import packet as pk
from ..engine import Config, Endpoint
from .apps import BulkApp
from .netem import Network

__all__ = ["add_addr_hijack", "Relay"]

CLIENT, SERVER, ATTACKER = "198.18.0.1", "198.18.0.2", "198.18.9.9"
PORT = 5000


class Relay:
    """The attacker's host: a NAT that forwards what reaches its address to the real server
    and back, counting the payload bytes it carries."""

    def __init__(self, address: str, server: str, port: int):
        self.address = bytes(int(x) for x in address.split("."))
        self.server = bytes(int(x) for x in server.split("."))
        self.port = port
        self.out: list[bytes] = []
        self.clients: dict[int, tuple[bytes, int]] = {}   # our port -> client (address, port)
        self.syns_seen = 0
        self.bytes_relayed = 0

    def receive_packet(self, data, now):
        p = pk.parse_packet(data)
        src = p.src_address(data)
        if src == self.server:              # from the server: back to the client
            client = self.clients.get(p.dport)
            if client is None:
                return
            new_src, new_dst, sport, dport = self.address, client[0], self.port, client[1]
        else:                               # from the client: on to the server
            if p.flags & pk.SYN and not p.flags & pk.ACK:
                self.syns_seen += 1
            self.clients[p.sport] = (src, p.sport)
            new_src, new_dst, sport, dport = self.address, self.server, p.sport, PORT
        self.bytes_relayed += p.payload_len
        self.out.append(pk.build_packet(new_src, new_dst, sport, dport, p.seq, p.ack, p.flags,
                                        p.window, options=bytes(p.options(data)),
                                        payload=bytes(p.payload(data))))

    def packets_to_send(self, now):
        out, self.out = self.out, []
        return out

    def get_timer(self):
        return None

    def handle_timer(self, now):
        pass


def _forged_add_addr(profile: str, client_sf, server_sf, rng: random.Random) -> bytes:
    """The attacker's packet: from the server's address and port to the client's, with the
    sequence numbers the attacker knows, announcing its own address (id 7); the HMAC, which
    the attacker cannot compute, is guessed from ``rng``."""
    if profile == "v1":
        option: opt.Option = opt.AddAddr(7, ATTACKER, None, rng.randbytes(8))   # cannot compute
    elif profile == "v0+add_addr2":
        option = opt.AddAddr2(7, ATTACKER, None, rng.randbytes(8))
    else:
        option = opt.AddAddrV0(7, ATTACKER)                                 # nothing to forge
    return pk.build_packet(SERVER, CLIENT, PORT, client_sf.lport,
                           (server_sf.iss + server_sf.snd_nxt) & 0xFFFFFFFF,
                           (client_sf.iss + client_sf.snd_nxt) & 0xFFFFFFFF, pk.ACK, 0xFFFF,
                           options=opt.encode_tcp_options([option]))


def add_addr_hijack(profile: str = "v0", size: int = 2 << 20, seed: int = 1,
                    inject_at: float = 0.1) -> dict:
    """Run a transfer between a client and a server of ``profile``, inject the forged
    ADD_ADDR at ``inject_at`` seconds, and report what became of it."""
    config = Config(profile=profile, time_wait=1.0)
    net = Network(seed=seed)
    client = BulkApp(Endpoint([CLIENT], config), send_bytes=size, seed=seed)
    server = BulkApp(Endpoint([SERVER], config), seed=seed + 1)
    server.endpoint.listen(PORT)
    relay = Relay(ATTACKER, SERVER, PORT)
    net.add_host(client, [CLIENT])
    net.add_host(server, [SERVER])
    net.add_host(relay, [ATTACKER])
    net.add_path(CLIENT, SERVER, rate=10e6, delay=0.010)
    net.add_path(CLIENT, ATTACKER, rate=50e6, delay=0.005)
    net.add_path(ATTACKER, SERVER, rate=50e6, delay=0.005)
    conn = client.open((SERVER, PORT), 0.0)

    def inject():
        server_conn = next(iter(server.endpoint.connections.values()))
        forged = _forged_add_addr(profile, conn.subflows[0], server_conn.subflows[0],
                                  random.Random(seed))
        client.receive_packet(forged, net.now)      # off-path: it just arrives
        net.wake(client)
    net.schedule(inject_at, inject)
    net.run(until=120.0, stop=lambda: any(t.eof for t in server.transfers.values()))
    received = next(iter(server.transfers.values()))
    sent = client.transfers[conn.id]
    attacker = bytes(int(x) for x in ATTACKER.split("."))
    to_attacker = [sf for sf in conn.all_subflows if sf.remote == attacker]
    return {
        "profile": profile,
        "hijacked": bool(to_attacker) and relay.bytes_relayed > 0,
        "subflows_to_attacker": len(to_attacker),
        "join_syns_at_attacker": relay.syns_seen,
        "bytes_through_attacker": relay.bytes_relayed,
        "client_bytes_via_attacker": sum(sf.bytes_sent for sf in to_attacker),
        "forged_add_addr_dropped": conn.bad_add_addr,
        "transfer_exact": received.received == size
        and received.received_hash.hexdigest() == sent.sent_hash.hexdigest(),
    }
