"""The emulated network (mptcp_fast.sim.netem): exact timing on the virtual clock (serialization,
propagation, queueing), drop-tail queues, random and bursty loss at their rates, reordering,
duplication, the MTU, paths going down and up, determinism from the seed, and its pcap, read
back by the project's reader and by tshark."""

from __future__ import annotations

import subprocess

import pytest

from mptcp_fast.analysis import capture
from mptcp_fast.wire import packet
from mptcp_fast.sim.netem import Network

A, B = "198.18.0.1", "198.18.0.2"


class Sender:
    """Sends ``count`` packets of ``size`` bytes to ``dst``, ``gap`` seconds apart (0: all at
    once), with the packet number in the TCP sequence number; records what it receives."""

    def __init__(self, src=A, dst=B, count=0, size=100, gap=0.0):
        self.src, self.dst, self.count, self.size, self.gap = src, dst, count, size, gap
        self.sent = 0
        self.next_time = 0.0
        self.received = []                 # (time, seq)

    def packet(self, seq):
        return packet.build_packet(self.src, self.dst, 1000, 2000, seq, 0, packet.ACK, 100,
                                   payload=bytes(self.size - 40))

    def receive_packet(self, data, now):
        self.received.append((now, packet.parse_packet(data).seq))

    def packets_to_send(self, now):
        out = []
        while self.sent < self.count and now >= self.next_time:
            out.append(self.packet(self.sent))
            self.sent += 1
            self.next_time = now + self.gap
            if self.gap:
                break
        return out

    def get_timer(self):
        return self.next_time if self.sent < self.count and self.gap else None

    def handle_timer(self, now):
        pass


def pair(**path):
    net = Network(seed=path.pop("seed", 1), pcap=path.pop("pcap", None))
    a, b = Sender(**path.pop("a", {})), Sender(src=B, dst=A)
    net.add_host(a, [A])
    net.add_host(b, [B])
    link = net.add_path(A, B, **path)
    return net, a, b, link


def test_timing_is_exact_on_the_virtual_clock():
    """1,500-byte packets on 12 Mbit/s take 1 ms each on the wire, then 10 ms to arrive: the
    k-th of a burst arrives at (k + 1) ms + 10 ms."""
    net, a, b, link = pair(rate=12e6, delay=0.010, a={"count": 5, "size": 1500})
    net.run()
    assert [seq for _, seq in b.received] == [0, 1, 2, 3, 4]
    assert [round(t, 9) for t, _ in b.received] == [0.011, 0.012, 0.013, 0.014, 0.015]
    assert link.stats(A).delivered == 5 and link.stats(A).bytes_delivered == 7500


def test_the_drop_tail_queue_drops_what_does_not_fit():
    net, a, b, link = pair(rate=1e6, delay=0.001, queue=10 * 1500, a={"count": 50, "size": 1500})
    net.run()
    stats = link.stats(A)
    assert (stats.delivered, stats.queue_drops) == (10, 40)
    assert [seq for _, seq in b.received] == list(range(10))


def test_the_peak_of_the_queue_is_the_most_it_held_at_once():
    """50 packets of 1500 bytes at once into a 1 Mbit/s link: the first goes straight to the
    wire (it is counted while it is sent) and the queue holds them all; spaced wider than a
    packet's time on the wire, it never holds more than one. Drops do not count."""
    net, a, b, link = pair(rate=1e6, delay=0.001, a={"count": 50, "size": 1500})
    net.run()
    assert link.stats(A).peak_queue_bytes == 50 * 1500
    net, a, b, link = pair(rate=1e6, delay=0.001, a={"count": 50, "size": 1500, "gap": 0.02})
    net.run()
    assert link.stats(A).peak_queue_bytes == 1500
    net, a, b, link = pair(rate=1e6, delay=0.001, queue=10 * 1500,
                           a={"count": 50, "size": 1500})
    net.run()
    assert link.stats(A).peak_queue_bytes == 10 * 1500


def test_random_loss_at_its_rate_and_deterministic_from_the_seed():
    def lost(seed):
        net, a, b, link = pair(seed=seed, loss=0.02, rate=1e9, a={"count": 20000, "size": 100,
                                                                  "gap": 0.0001})
        net.run()
        return sorted(set(range(20000)) - {seq for _, seq in b.received})
    first, again, other = lost(1), lost(1), lost(2)
    assert first == again and first != other
    assert 300 < len(first) < 500                     # 2 % of 20,000 = 400


def test_bursty_loss_comes_in_bursts():
    """Gilbert-Elliott: to bad 1 %, back to good 20 %, everything lost when bad: about 4.8 %
    lost, in bursts of about 5 packets (1 / 0.2), where random loss gives bursts of ~1."""
    net, a, b, link = pair(burst=(0.01, 0.2, 1.0), rate=1e9, a={"count": 40000, "size": 100,
                                                                 "gap": 0.0001})
    net.run()
    got = {seq for _, seq in b.received}
    lost = [seq for seq in range(40000) if seq not in got]
    bursts = sum(1 for seq in lost if seq - 1 not in lost)
    assert 0.03 < len(lost) / 40000 < 0.07
    assert 3.5 < len(lost) / bursts < 7


def test_reordering_and_duplication():
    net, a, b, link = pair(reorder=0.1, reorder_delay=0.005, duplicate=0.05, rate=1e9,
                           a={"count": 2000, "size": 100, "gap": 0.001})
    net.run()
    seqs = [seq for _, seq in b.received]
    stats = link.stats(A)
    assert len(seqs) == 2000 + stats.duplicated and 50 < stats.duplicated < 150
    assert sorted(set(seqs)) == list(range(2000))
    overtaken = sum(1 for x, y in zip(seqs, seqs[1:]) if y < x)
    assert 100 < stats.reordered < 300 and overtaken >= stats.reordered // 2


def test_the_mtu_drops_big_packets():
    net, a, b, link = pair(mtu=1280, a={"count": 3, "size": 1500})
    net.run()
    assert b.received == [] and link.stats(A).mtu_drops == 3


def test_a_path_goes_down_and_comes_back():
    net, a, b, link = pair(rate=1e9, delay=0.002, a={"count": 100, "size": 100, "gap": 0.001})
    link.down(at=0.030)
    link.up(at=0.060)
    net.run()
    seqs = [seq for _, seq in b.received]
    times = [t for t, _ in b.received]
    assert not any(0.030 <= t < 0.060 for t in times)            # nothing arrives while down
    assert seqs[0] == 0 and seqs[-1] == 99 and link.stats(A).lost == 100 - len(seqs)
    assert 25 < 100 - len(seqs) < 35


def test_packets_without_a_path_are_counted():
    net = Network()
    lone = Sender(src=A, dst="198.18.9.9", count=3)
    net.add_host(lone, [A])
    net.run()
    assert net.unroutable == 3


def test_the_pcap_holds_every_packet_sent(tmp_path):
    path = tmp_path / "run.pcap"
    net, a, b, link = pair(pcap=str(path), rate=12e6, delay=0.010, a={"count": 4, "size": 1500})
    net.run()
    net.close()
    with capture.open_capture(str(path)) as reader:
        segs = list(reader)
    assert [s.seq for s in segs] == [0, 1, 2, 3]
    assert [round(s.time, 6) for s in segs] == [0.0, 0.0, 0.0, 0.0]


@pytest.mark.requires("tshark")
def test_tshark_reads_the_pcap_with_good_checksums(tmp_path):
    path = tmp_path / "run.pcap"
    net, a, b, link = pair(pcap=str(path), rate=12e6, delay=0.010, a={"count": 4, "size": 1500})
    net.run()
    net.close()
    out = subprocess.run(["tshark", "-r", str(path), "-o", "tcp.check_checksum:TRUE",
                          "-T", "fields", "-e", "tcp.seq_raw", "-e", "tcp.checksum.status"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["0", "1", "1", "1", "2", "1", "3", "1"]      # seq, then 1 = checksum good


def test_path_arguments_are_checked():
    net = Network()
    for bad in ({"rate": 0}, {"delay": -1}, {"loss": 1.5}, {"burst": (0.1, 0.2)},
                {"mtu": 10}, {"duplicate": -0.1}):
        with pytest.raises(ValueError):
            net.add_path(A, B, **bad)
    with pytest.raises(ValueError, match="one family"):
        net.add_path(A, "2001:2::1")


def test_a_pcap_file_object_given_stays_open():
    import io
    out = io.BytesIO()
    net, a, b, link = pair(pcap=out, a={"count": 2, "size": 100})
    net.run()
    net.close()
    assert not out.closed and len(out.getvalue()) == 24 + 2 * (16 + 100)


def test_offloaded_segments_are_carried_whole_on_a_clean_path_and_cut_on_another():
    """TSO: a 10-MSS segment on a clean path arrives whole, when its 10 wire packets would
    have; on a lossy path it is cut into those packets (headers and options on each)."""
    from mptcp_fast.wire import options as opt
    big = packet.build_packet(A, B, 1000, 2000, 7, 0, packet.ACK | packet.PSH, 100,
                              options=opt.encode_tcp_options([opt.Timestamps(1, 2)]),
                              payload=bytes(range(256)) * 55)              # 14,080 bytes
    per = 1500 - 20 - 20 - 12
    count = -(-len(big[52:]) // per)
    for loss, whole in ((0.0, True), (0.0001, False)):
        net = Network(seed=1)
        sink = Sender(src=B, dst=A)
        got = []
        sink.receive_packet = lambda data, now: got.append((now, data))

        class Once:
            sent = False

            def receive_packet(self, data, now):
                pass

            def packets_to_send(self, now):
                if self.sent:
                    return []
                self.sent = True
                return [big]

            def get_timer(self):
                return None

            def handle_timer(self, now):
                pass
        net.add_host(Once(), [A])
        net.add_host(sink, [B])
        link = net.add_path(A, B, rate=1e8, delay=0.001, loss=loss, offload=True)
        net.run()
        wire = count * 52 + len(big) - 52
        if whole:
            assert [d for _, d in got] == [big]
            assert got[0][0] == pytest.approx(wire * 8 / 1e8 + 0.001)
        else:
            pieces = [packet.parse_packet(d) for _, d in got]
            assert len(pieces) == count and all(len(d) <= 1500 for _, d in got)
            assert b"".join(bytes(p.payload(d)) for p, (_, d) in zip(pieces, got)) == big[52:]
            assert [p.seq for p in pieces] == [7 + i * per for i in range(count)]
            assert [bool(p.flags & packet.PSH) for p in pieces] == [False] * (count - 1) + [True]
        assert link.stats(A).sent == count and link.stats(A).delivered == count


class BatchSink(Sender):
    """A host that takes batches (``receive_packets``), recording each one."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.batches = []                  # (time, [seq, ...])

    def receive_packets(self, packets, now):
        self.batches.append((now, [packet.parse_packet(p).seq for p in packets]))


def test_rx_coalescing_hands_over_what_arrived_within_its_time_at_once():
    """1,500-byte packets 1 ms apart on the wire (12 Mbit/s), 10 ms of delay: the first
    arrives at 11 ms and starts the NIC's 2.5 ms clock; the second and third (12, 13 ms)
    join it and all three are handed over at 13.5 ms; the fourth (14 ms) starts the next
    batch, with the fifth (15 ms), at 16.5 ms."""
    net = Network()
    a, b = Sender(count=5, size=1500), BatchSink(src=B, dst=A)
    net.add_host(a, [A])
    net.add_host(b, [B], rx_coalesce=0.0025)
    net.add_path(A, B, rate=12e6, delay=0.010)
    net.run()
    assert [(round(t, 9), seqs) for t, seqs in b.batches] == [(0.0135, [0, 1, 2]),
                                                                (0.0165, [3, 4])]
    assert b.received == []


def test_a_coalescing_host_without_batches_takes_them_one_by_one():
    net, a, b, link = pair(rate=12e6, delay=0.010, a={"count": 3, "size": 1500})
    net.add_host(b, [B], rx_coalesce=0.005)        # (attached again: the setting changes)
    net.run()
    assert [(round(t, 9), seq) for t, seq in b.received] == [(0.016, 0), (0.016, 1), (0.016, 2)]


@pytest.mark.parametrize("bad", [-1e-6, 1.5, True, "0.01", None])
def test_rx_coalesce_is_checked(bad):
    with pytest.raises(ValueError, match="rx_coalesce must be seconds in 0..1"):
        Network().add_host(Sender(), [A], rx_coalesce=bad)


def test_an_engine_behind_a_coalescing_nic_acknowledges_each_batch_once(backend):
    """A bulk transfer between two engines whose NICs coalesce 20 us, on 10 Gbit/s paths
    (about 16 packets a batch): every byte arrives, byte-exact, without a retransmission,
    and the receiver sends a tenth of the ACKs, since it acknowledges each batch once (as
    Linux acknowledges what GRO merged in one poll), not every second segment."""
    from mptcp_fast.sim import demo
    paths = [demo.PathSpec(10e9, 0.001), demo.PathSpec(10e9, 0.001)]
    size = 8 << 20
    acks = {}
    for coalesce in (0.0, 20e-6):
        r = demo.run_transfer(size, paths, rx_coalesce=coalesce, queue=64 << 20)
        assert r["exact"] and r["reinjected_bytes"] == 0
        assert all(sf["retransmits"] == 0 for sf in r["subflows"])
        data_segments = -(-size // 1420)            # (the sender's full segments)
        acks[coalesce] = r["packets"] - data_segments
    assert acks[0.0] > 0.45 * data_segments          # one ACK per two segments
    assert acks[20e-6] < 0.1 * data_segments         # one per batch


def test_slow_start_counts_the_segments_a_batch_acknowledgment_delivers(backend):
    """Behind NICs that coalesce, one ACK covers a batch of segments; slow start grows by
    every full segment an ACK newly delivers (Linux's tcp_slow_start counts packets), so the
    window doubles per round trip as with an ACK per two segments, and the transfer takes
    about the same virtual time. Grown by one segment per ACK (RFC 3465 with L = 1) it took
    twice as long: 0.137 s against 0.070 s for these 8 MiB."""
    from mptcp_fast.sim import demo
    paths = [demo.PathSpec(10e9, 0.001), demo.PathSpec(10e9, 0.001)]
    took = {}
    for coalesce in (0.0, 20e-6):
        r = demo.run_transfer(8 << 20, paths, rx_coalesce=coalesce, queue=64 << 20)
        assert r["exact"] and all(sf["retransmits"] == 0 for sf in r["subflows"])
        took[coalesce] = r["completion_seconds"]
    assert took[20e-6] < 1.1 * took[0.0], took


def test_both_backends_take_the_same_course_behind_coalescing_nics(on_both):
    from mptcp_fast.sim import demo
    paths = [demo.PathSpec(10e9, 0.001), demo.PathSpec(2e9, 0.003)]

    def course():
        r = demo.run_transfer(2 << 20, paths, rx_coalesce=30e-6, queue=64 << 20)
        return (r["packets"], r["completion_seconds"], r["sha256"],
                [(sf["bytes"], sf["retransmits"]) for sf in r["subflows"]])

    compiled, pure = on_both(course)
    assert compiled == pure and compiled[0] > 1500
