"""A blind, off-path attacker for the emulated network.

The attacker knows the 4-tuples of a connection's subflows (RFC 7430 §3 lists how they leak)
and nothing else: not the sequence numbers, not the keys. It sweeps the 32-bit sequence space
in steps of one receive window, so exactly one (or two) of its packets per sweep land in the
window; the ACK number and every option field are random. RFC 5961 (§3 RST, §4 SYN, §5 the
ACK check on data) and RFC 8684 (§3.3 mappings within the window, §3.4.2 REMOVE_ADDR probed
first, §3.7 fallback only for acceptable segments) say what such a packet may change:
nothing a transfer would notice.

    from mptcp_fast.sim import blind
    attacker = blind.BlindAttacker(net, [client, server], seed=1)
    attacker.start(at=0.02, every=0.01)          # one sweep of the next kind every 10 ms
    net.run(...)
    attacker.errors                              # (kind, packet, exception) raised by a host
    attacker.sent                                # forged packets injected, per kind

Every forgery kind is in ``KINDS``; ``forge(kind, rng, tuple4, seq)`` builds one packet.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..wire import options as opt
from ..wire import packet as pk

__all__ = ["KINDS", "FourTuple", "forge", "sweep", "BlindAttacker"]

MASK32 = 0xFFFFFFFF
MASK64 = (1 << 64) - 1
DEFAULT_STEP = 4 << 20             # the engine's default receive window (Config.receive_window)

# Every kind of forgery: TCP control segments, data, and a pure ACK carrying each MPTCP option.
KINDS = ("rst", "syn", "data", "data+dss", "dss-map", "data-fin", "data-ack", "remove-addr",
         "mp-fail", "fastclose", "mp-prio", "add-addr", "mp-capable", "mp-join")


@dataclass(frozen=True)
class FourTuple:
    """A forged packet's addressing: from the peer's (address, port) to the victim's."""
    src: bytes
    sport: int
    dst: bytes
    dport: int


def _u(rng, bits: int) -> int:
    return rng.getrandbits(bits)


def _dss_mapping(rng, *, length=None, data_fin=None) -> opt.Dss:
    """A DSS with a random mapping (RFC 8684 §3.3.1): random DSN (32 or 64 bits), relative
    subflow sequence number, length, checksum (or none) and DATA_FIN flag; sometimes a random
    DATA_ACK too."""
    dsn64 = rng.random() < 0.5
    fin = rng.random() < 0.2 if data_fin is None else data_fin
    size = rng.randrange(1, 65536) if length is None else length
    ack = rng.random() < 0.5
    ack64 = rng.random() < 0.5
    return opt.Dss(_u(rng, 64 if ack64 else 32) if ack else None, ack64,
                   _u(rng, 64 if dsn64 else 32), dsn64, _u(rng, 32), size,
                   _u(rng, 16) if rng.random() < 0.5 else None, fin)


def _option(kind: str, rng) -> list:
    """The MPTCP option(s) of a pure-ACK forgery of ``kind``, every field random."""
    if kind == "dss-map":
        return [_dss_mapping(rng)]
    if kind == "data-fin":                          # RFC 8684 §3.3.3: a DATA_FIN on its own
        dsn64 = rng.random() < 0.5
        return [opt.Dss(None, False, _u(rng, 64 if dsn64 else 32), dsn64, 0, 1,
                        _u(rng, 16) if rng.random() < 0.5 else None, True)]
    if kind == "data-ack":
        ack64 = rng.random() < 0.5
        return [opt.Dss(_u(rng, 64 if ack64 else 32), ack64, None, False, None, None, None,
                        False)]
    if kind == "remove-addr":                       # ids 0-7: every subflow's id, likely
        count = rng.randrange(1, 9)
        return [opt.RemoveAddr(tuple(sorted(rng.sample(range(8), count))))]
    if kind == "mp-fail":
        return [opt.MpFail(_u(rng, 64))]
    if kind == "fastclose":
        return [opt.MpFastclose(_u(rng, 64))]
    if kind == "mp-prio":
        return [opt.MpPrio(rng.random() < 0.5, None)]
    if kind == "add-addr":
        address = bytes([198, 18, rng.randrange(256), rng.randrange(1, 255)])
        port = rng.randrange(1, 65536) if rng.random() < 0.5 else None
        echo = rng.random() < 0.3
        return [opt.AddAddr(rng.randrange(256), address, port,
                            None if echo else rng.randbytes(8))]
    if kind == "mp-capable":
        shape = rng.randrange(3)
        if shape == 0:
            return [opt.MpCapable(1, rng.choice((0x01, 0x81)), _u(rng, 64))]
        if shape == 1:
            return [opt.MpCapable(1, rng.choice((0x01, 0x81)), _u(rng, 64), _u(rng, 64))]
        return [opt.MpCapable(1, 0x01, _u(rng, 64), _u(rng, 64), rng.randrange(1, 65536),
                              None)]
    if kind == "mp-join":
        shape = rng.randrange(3)
        if shape == 0:
            return [opt.MpJoinAck(rng.randbytes(20))]
        if shape == 1:
            return [opt.MpJoinSynAck(rng.randrange(256), rng.randbytes(8), _u(rng, 32),
                                     rng.random() < 0.5)]
        return [opt.MpJoinSyn(rng.randrange(256), _u(rng, 32), _u(rng, 32), rng.random() < 0.5)]
    raise ValueError(f"unknown forgery kind {kind!r}")


def forge(kind: str, rng: random.Random, target: FourTuple, seq: int) -> bytes:
    """One forged packet of ``kind`` to ``target`` with sequence number ``seq``; the ACK number
    and every other field random."""
    ack = _u(rng, 32)
    window = rng.randrange(65536)
    flags = pk.ACK
    options: list = []
    payload = b""
    if kind == "rst":                               # RFC 5961 §3: only the exact one resets
        flags = rng.choice((pk.RST, pk.RST | pk.ACK))
    elif kind == "syn":                             # RFC 5961 §4: a challenge ACK, nothing else
        flags = pk.SYN
        ack = 0
        if rng.random() < 0.5:
            options = [opt.MpCapable(1, 0x81)]
    elif kind == "data":                            # no DSS at all (RFC 8684 §3.7 fallback bait)
        flags = pk.ACK | pk.PSH
        payload = rng.randbytes(rng.randrange(1, 1401))
    elif kind == "data+dss":                        # data with a random mapping of itself
        flags = pk.ACK | pk.PSH
        payload = rng.randbytes(rng.randrange(1, 1401))
        options = [_dss_mapping(rng, length=len(payload), data_fin=False)]
    else:
        options = _option(kind, rng)
    area = opt.encode_tcp_options(options) if options else b""
    return pk.build_packet(target.src, target.dst, target.sport, target.dport, seq & MASK32,
                           ack, flags, window, options=area, payload=payload)


def sweep(kind: str, rng: random.Random, target: FourTuple, step: int = DEFAULT_STEP):
    """One blind sweep: a packet of ``kind`` every ``step`` sequence numbers from a random
    offset, 2**32 / step packets in all (whatever the window's position, one lands in it)."""
    start = rng.randrange(step)
    for seq in range(start, 1 << 32, step):
        yield forge(kind, rng, target, seq)


def four_tuples(endpoint) -> list:
    """What the attacker knows of a victim: the 4-tuple of each of its subflows, as forged
    packets from the peer to it would carry it."""
    out = []
    for conn in list(endpoint.connections.values()):
        for sf in list(conn.all_subflows):
            if sf.lport and sf.rport:
                out.append(FourTuple(sf.remote, sf.rport, sf.local, sf.lport))
    return out


class BlindAttacker:
    """Sweeps of every kind against every subflow of ``victims`` (hosts of the emulated network,
    each with an ``endpoint``), one kind per tick: the packets arrive at the host as if off the
    wire (``host.receive_packet``), then the network collects what the host answers. What a
    host raises is recorded in ``errors`` (the kind, the packet, the exception), never
    propagated: the transfer goes on, and the test reports every error."""

    def __init__(self, net, victims, seed: int = 1, kinds=KINDS, step: int = DEFAULT_STEP,
                 rounds: int = 1):
        self.net, self.victims = net, list(victims)
        self.rng = random.Random(seed)
        self.plan = [k for _ in range(rounds) for k in kinds]
        self.step = step
        self.sent: dict[str, int] = {}              # kind -> packets injected
        self.errors: list[tuple[str, bytes, Exception]] = []   # (kind, packet, exception)
        self.finished_at = None

    def start(self, at: float, every: float) -> None:
        """Sweep the next kind at ``at``, ``at + every``, ... until every kind of the plan ran."""
        self.every = every
        self.net.schedule(at, self._tick, 0)

    def _tick(self, index: int) -> None:
        if index >= len(self.plan):
            self.finished_at = self.net.now
            return
        kind = self.plan[index]
        for host in self.victims:
            for target in four_tuples(host.endpoint):
                self._sweep_one(host, kind, target)
            self.net.wake(host)                     # its challenge ACKs go out
        self.net.schedule(self.net.now + self.every, self._tick, index + 1)

    def _sweep_one(self, host, kind: str, target: FourTuple) -> None:
        now = self.net.now
        for packet in sweep(kind, self.rng, target, self.step):
            self.sent[kind] = self.sent.get(kind, 0) + 1
            try:
                host.receive_packet(packet, now)
            except Exception as exc:  # noqa: BLE001 — every escape is a finding, kept
                self.errors.append((kind, packet, exc))
