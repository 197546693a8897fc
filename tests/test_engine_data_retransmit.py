"""The data level sends again what its DATA_ACK does not cover in time (RFC 8684 §3.3.6, as
Linux's mptcp_retransmit_timer does): a receiver may acknowledge a segment at the subflow level
and drop its mapping (Linux does so with a mapping beyond the window it announced, counting
NoDSSInWindow), and then no subflow ever sends those bytes again. The emulated middlebox
``remap_to_past`` makes the receiver do exactly that: it moves a mapping onto bytes the
receiver already has, which the receiver acknowledges and drops as duplicates.

And the sender never sends beyond the data-level window the receiver announced (RFC 8684
§3.3.4: one window, relative to the DATA_ACK, shared by every subflow), with six subflows
taking their share of a small window."""

from __future__ import annotations

import pytest

from enginenet import C0, C1, C2, PORT, S0, S1, make, finished, transfer
from mptcp_fast.engine import Config
from mptcp_fast.engine.connection import RETRANS_BACKOFF_MAX
from mptcp_fast.sim.netem import remap_to_past
from mptcp_fast.wire import options as opt
from mptcp_fast.wire import packet as pk

MB = 1 << 20
MASK64 = (1 << 64) - 1
PATHS = {(C0, S0): dict(rate=20e6, delay=0.005), (C1, S0): dict(rate=20e6, delay=0.010)}


def _mapping(packet):
    """(dsn, data_len) of a data segment's DSS mapping, or None."""
    p = pk.parse_packet(packet)
    if not p.payload_len:
        return None
    for o in opt.parse_tcp_options(bytes(p.options(packet))):
        if type(o) is opt.Dss and o.dsn is not None:
            return o.dsn, o.data_len
    return None


class Recorder:
    """A middlebox that hands every packet to ``inner`` (another middlebox; none: passes it
    on) and records the mappings of the data segments going from a to b: ``sent`` those it
    was offered ((virtual time, dsn, length), each segment), ``moved`` those ``inner``
    changed (their original (dsn, length), once each)."""

    def __init__(self, net, inner=None):
        self.net, self.inner = net, inner
        self.sent, self.moved = [], []

    def __call__(self, packet, from_a):
        out = packet if self.inner is None else self.inner(packet, from_a)
        mapping = _mapping(packet) if from_a else None
        if mapping is not None:
            self.sent.append((self.net.now, *mapping))
            if out != packet and mapping not in self.moved:
                self.moved.append(mapping)
        return out


def _covers(records, dsn) -> bool:
    return any(0 <= (dsn - start) & MASK64 < length for _, start, length in records)


def test_a_mapping_the_receiver_drops_is_sent_again_on_the_other_subflow(backend):
    recorders = {}

    def install(net, client, server, made, conn):
        recorders[C0] = made[(C0, S0)].middlebox = Recorder(net)
        recorders[C1] = made[(C1, S0)].middlebox = Recorder(net, remap_to_past(nth=3))
    run = transfer(PATHS, up=MB, before_run=install, seeded_endpoints=True)
    run.check_exact(MB, 0)                       # before the timer: stuck for ever at the hole
    (hole, length), = recorders[C1].moved         # one mapping dropped by the receiver
    server_conn = run.up[1].conn
    assert server_conn.queue.duplicate_bytes >= length          # acknowledged, then dropped
    assert run.conn.data_retransmits >= 1 and run.conn.reinjected_bytes >= length
    dropped_at = min(t for t, dsn, _ in recorders[C1].sent if dsn == hole)
    again = [r for r in recorders[C0].sent if r[0] > dropped_at]
    assert _covers(again, hole)                   # sent again on the other subflow


def test_the_only_subflow_sends_the_dropped_mapping_again(backend):
    recorders = {}

    def install(net, client, server, made, conn):
        recorders[C0] = made[(C0, S0)].middlebox = Recorder(net, remap_to_past(nth=2))
    run = transfer({(C0, S0): PATHS[(C0, S0)]}, up=MB, client_addresses=(C0,),
                   before_run=install, seeded_endpoints=True)
    run.check_exact(MB, 0)
    (hole, length), = recorders[C0].moved
    assert len(run.conn.all_subflows) == 1 and run.conn.data_retransmits >= 1
    assert [dsn for _, dsn, _ in recorders[C0].sent].count(hole) >= 2     # the same subflow


def hold_data_acks(after: int):
    """A middlebox that holds the DATA_ACKs going from b to a at the first DSN ``after`` bytes
    past the first one it saw: a receiver whose data level stands still while its subflows
    acknowledge everything."""
    held = []

    def middlebox(packet, from_a):
        if from_a:
            return packet
        p = pk.parse_packet(packet)
        found = opt.parse_tcp_options(bytes(p.options(packet)))
        dss = next((o for o in found if type(o) is opt.Dss and o.data_ack is not None), None)
        if dss is None:
            return packet
        if not held:
            held.append((dss.data_ack + after) & MASK64)
        if 0 <= (held[0] - dss.data_ack) & MASK64 < 1 << 63:
            return packet                             # not past the held DSN yet
        moved = opt.Dss(held[0], True, dss.dsn, dss.dsn64, dss.subflow_seq, dss.data_len,
                        dss.checksum, dss.data_fin)
        area = opt.encode_tcp_options([moved if o is dss else o for o in found], align=False)
        area += b"\x00" * (-len(area) % 4)
        return pk.build_packet(p.src_address(packet), p.dst_address(packet), p.sport, p.dport,
                               p.seq, p.ack, p.flags, p.window, options=area,
                               payload=bytes(p.payload(packet)))
    return middlebox


def test_the_timer_backs_off_to_the_maximum_while_the_data_ack_stands_still(backend):
    """The receiver's DATA_ACK stays at 100,000 bytes until 8 s (its subflow acknowledges all):
    the timer resends the bytes from there at intervals that double from the RTO (200 ms,
    Config.min_rto) up to Config.max_rto (1 s here) and stay there, its state a deadline, a
    start and a bounded backoff count however long it lasts; then the data moves on."""
    config = Config(time_wait=0.5, delayed_ack=0.04, max_rto=1.0)
    recorder = []

    def install(net, client, server, made, conn):
        path = made[(C0, S0)]
        recorder.append(Recorder(net, hold_data_acks(100_000)))
        path.middlebox = recorder[0]
        net.schedule(8.0, lambda: setattr(recorder[0], "inner", None))
    run = transfer({(C0, S0): PATHS[(C0, S0)]}, up=MB, client_addresses=(C0,), config=config,
                   before_run=install, seeded_endpoints=True)
    run.check_exact(MB, 0)
    first = min(dsn for _, dsn, _ in recorder[0].sent)
    held = (first + 100_000) & MASK64
    starts = sorted({t for t, dsn, _ in recorder[0].sent if dsn == held and t < 8.0})
    gaps = [round(b - a, 6) for a, b in zip(starts, starts[1:])]
    assert gaps[:2] == [pytest.approx(0.4), pytest.approx(0.8)]
    assert gaps[2:] == [pytest.approx(1.0)] * len(gaps[2:]) and len(gaps) >= 6
    assert run.conn.data_retransmits >= len(starts) - 1
    assert run.conn.retrans_backoff <= RETRANS_BACKOFF_MAX and run.conn.retrans_at is None


class WindowWatch:
    """A middlebox on every path (the same object) that checks RFC 8684 §3.3.4 from the wire:
    no data segment from a to b ends beyond the largest right edge (DATA_ACK + window, scaled
    as the receiver's SYN or SYN/ACK said) that b had announced on any subflow by then."""

    def __init__(self):
        self.scale = {}        # (sender address, port, receiver address, port) -> window shift
        self.isn = {}
        self.edge = None
        self.data_ack = None
        self.checked = self.beyond = 0

    def __call__(self, packet, from_a):
        p = pk.parse_packet(packet)
        key = (p.src_address(packet), p.sport, p.dst_address(packet), p.dport)
        found = opt.parse_tcp_options(bytes(p.options(packet)))
        if p.flags & pk.SYN:
            self.isn[key] = p.seq
            self.scale[key] = next((o.shift for o in found if type(o) is opt.WindowScale), 0)
            return packet
        dss = next((o for o in found if type(o) is opt.Dss), None)
        if not from_a:                                        # the receiver's side
            if dss is not None and dss.data_ack is not None and dss.ack64:
                self.data_ack = dss.data_ack
            if self.data_ack is not None:
                edge = self.data_ack + (p.window << self.scale.get(key, 0))
                self.edge = edge if self.edge is None else max(self.edge, edge)
        elif dss is not None and dss.dsn is not None and p.payload_len and key in self.isn:
            offset = ((p.seq - self.isn[key]) - dss.subflow_seq) & 0xFFFFFFFF
            end = dss.dsn + offset + p.payload_len
            self.checked += 1
            self.beyond += self.edge is None or end > self.edge
        return packet


def test_six_subflows_never_send_beyond_the_shared_window(backend):
    """Three client addresses to two server addresses (the kernel's fullmesh case), each
    subflow in turn (round-robin), a 64 KiB receive window and some loss (retransmissions and
    reinjections too)."""
    pairs = [(c, s) for c in (C0, C1, C2) for s in (S0, S1)]
    paths = {pair: dict(rate=20e6, delay=0.004 + 0.002 * i, loss=0.002)
             for i, pair in enumerate(pairs)}
    watch = WindowWatch()
    server_config = Config(time_wait=0.5, delayed_ack=0.04, receive_window=65536,
                           initial_receive_window=65536)
    client_config = Config(time_wait=0.5, delayed_ack=0.04, scheduler="round-robin")
    net, client, server, made = make(paths, up=2 * MB, client_addresses=(C0, C1, C2),
                                     server_addresses=(S0, S1), config=client_config,
                                     server_config=server_config, seed=4)
    for path in made.values():
        path.middlebox = watch
    conn = client.open((S0, PORT), 0.0)

    def join_all():
        for local, remote in pairs[1:]:
            conn.join(local, (remote, PORT))
        net.wake(client)
    net.schedule(0.05, join_all)
    net.run(until=120, stop=finished(client, server))
    received = next(iter(server.transfers.values()))
    assert received.received == 2 * MB and received.received_hash.digest() == \
        client.transfers[conn.id].sent_hash.digest()
    assert len([sf for sf in conn.all_subflows if sf.bytes_sent]) == 6
    assert watch.checked > 1000 and watch.beyond == 0
    assert received.conn.queue.refused_bytes == 0 and received.conn.refused_mappings == 0
