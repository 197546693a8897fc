"""Connections whose handshakes are not in the capture: a capture taken on a router
or a server usually starts long after its connections did. Without MP_CAPABLE or MP_JOIN there
are no keys and no ISNs, but the DSS options still say a lot:

* The subflows of one connection share its two 64-bit data sequence spaces (RFC 8684 §3.3.1):
  their mappings, and the DATA_ACKs flowing the other way, fall in the same narrow ranges,
  while the spaces of different connections start at random IDSNs (§3.1), so ranges that
  overlap (or nearly: within ``GAP`` bytes) are one space, and a flow whose two directions
  land in spaces X and Y belongs to the connection {X, Y}.
* Every segment lies inside its mapping: ISN + SSN <= seq < ISN + SSN + data_len, where SSN
  is the mapping's relative subflow sequence number (§3.3.1). So ``seq - SSN`` bounds the ISN
  from above, and the first segment of any mapping meets the bound: the ISN is the smallest
  ``seq - SSN`` seen (in 32-bit serial arithmetic, RFC 1982).
* The stream of each space is rebuilt from the first data-level byte seen: the lowest
  mapping DSN plus the offset of its first captured segment in it.

The analyzer's first pass gathers these facts as it reads (``Collector``: the rows of the
flows it could not place, told apart by the tracker's per-row subflow numbers, so the capture
is not read again for them); ``survey(batches)`` reads the DSS columns of a capture
(vectorised, per batch) for the flows the analyzer could not place. Both give a ``Survey``:
per flow its connection, which side is the client (guessed: the lower port is the server's),
the ISN per direction, whether its mappings carry checksums; per connection the first DSN of
each direction. 32-bit mapping DSNs are expanded to 64 bits against the 64-bit DATA_ACKs the
other side sent for them; a direction with neither stays unplaced, as does a flow whose two
directions could not both be placed (one data ACK from the other side is enough for that).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import capture

__all__ = ["survey", "Survey", "FlowPlacement", "Collector", "GAP"]

GAP = 1 << 32                  # DSN ranges closer than this are one data sequence space
_M_DSN, _M_ACK, _M_ACK64, _M_DSN64 = 4, 1, 2, 8      # dss_flags bits (capture columns)
MASK32, MASK64 = (1 << 32) - 1, (1 << 64) - 1


@dataclass
class _Side:
    """What one direction of one flow showed: flow (src, sport) -> (dst, dport)."""
    isn_candidate: int | None = None        # the smallest seq - SSN (serial), if any mapping
    first_dsn: int | None = None            # the lowest DSN of a mapping longer than a byte...
    first_u: int | None = None              # ... and the smallest seq - SSN within it
    one_byte_dsn: int | None = None         # the lowest one-byte mapping's (_place: a probe?)
    one_byte_u: int | None = None
    lo: int | None = None                   # DSNs this direction's data spans (its mappings)
    hi: int | None = None
    acked_lo: int | None = None             # DATA_ACKs this direction sent (the other's DSNs)
    acked_hi: int | None = None
    checksums: bool = False
    lo32: int | None = None                 # 32-bit mapping DSNs (RFC 8684 §3.3.1 allows
    hi32: int | None = None                 # them), expanded once a 64-bit DATA_ACK of the
    first_dsn32: int | None = None          # same space is known
    first_u32: int | None = None

    def widen(self, lo: int, hi: int, acked: bool) -> None:
        if acked:
            self.acked_lo = lo if self.acked_lo is None else min(self.acked_lo, lo)
            self.acked_hi = hi if self.acked_hi is None else max(self.acked_hi, hi)
        else:
            self.lo = lo if self.lo is None else min(self.lo, lo)
            self.hi = hi if self.hi is None else max(self.hi, hi)

    def candidate(self, u: int) -> None:
        if self.isn_candidate is None or _serial_less(u, self.isn_candidate):
            self.isn_candidate = u


def _serial_less(a: int, b: int) -> bool:
    return a != b and ((b - a) & MASK32) < (1 << 31)


@dataclass
class FlowPlacement:
    connection: int                          # index into Survey.connections
    client: tuple                            # (address bytes, port)
    server: tuple
    isn: dict                                # "up" / "down" -> ISN (absent when unknown)
    checksums: bool


@dataclass
class Survey:
    flows: dict = field(default_factory=dict)          # (src, sport, dst, dport) -> placement
    connections: list = field(default_factory=list)    # {"up": first DSN, "down": ...}

    def placement(self, src: bytes, sport: int, dst: bytes, dport: int):
        return self.flows.get((src, sport, dst, dport)) or self.flows.get((dst, dport, src, sport))


def survey(batches, wanted=None) -> Survey:
    """Survey the DSS columns of ``batches`` (CaptureReader.columns dicts) for the flows in
    ``wanted`` (a set of (src, sport, dst, dport) in either order; None: every flow)."""
    sides: dict[tuple, _Side] = {}
    for cols in batches:
        _feed(cols, sides, wanted)
    return _place(sides)


class Collector:
    """The survey's facts gathered during the analyzer's first pass, from the rows of the flows
    it could not place (``follow``: the tracker's subflow numbers of those 4-tuples). The
    result equals ``survey`` over the whole file for those flows unless a 4-tuple had rows
    before it was known to be unplaced (``complete`` is then False: survey the file)."""

    def __init__(self):
        self.sides: dict = {}
        self.complete = True
        self._followed = np.zeros(0, bool)        # sid -> its rows feed the survey
        self._unplaced: set = set()               # 4-tuples, both orientations
        self._unfollowed: set = set()             # 4-tuples of DSS rows nobody registered

    def follow(self, sid: int) -> None:
        if sid >= len(self._followed):
            grown = np.zeros(max(64, 2 * len(self._followed), sid + 1), bool)
            grown[:len(self._followed)] = self._followed
            self._followed = grown
        self._followed[sid] = True

    def unplaced(self, flow: tuple, earlier: bool) -> None:
        """``flow`` (src, sport, dst, dport) could not be placed; ``earlier``: its 4-tuple
        was registered before (rows the survey did not see)."""
        self._unplaced.add(flow)
        self._unplaced.add((flow[2], flow[3], flow[0], flow[1]))
        self.complete &= not earlier

    def is_unplaced(self, flow: tuple) -> bool:
        return flow in self._unplaced

    def unregistered_dss(self, flow: tuple) -> None:
        """A DSS row of a flow the analyzer did not register (no MPTCP option it accepts)."""
        self._unfollowed.add(flow)
        self._unfollowed.add((flow[2], flow[3], flow[0], flow[1]))

    def add(self, cols, row_sides) -> None:
        """One batch; ``row_sides``: the tracker's 2 * sid + direction per row."""
        if not self._unplaced:
            return
        sid = np.where(row_sides >= 0, row_sides >> 1, 0)
        among = (row_sides >= 0) & self._followed[np.minimum(sid, len(self._followed) - 1)]
        if among.any():
            _feed(cols, self.sides, None, among)

    def survey(self):
        """The Survey, or None when the file must be surveyed again (``complete`` False)."""
        if not self.complete or self._unfollowed & self._unplaced:
            return None
        return _place(self.sides)


def _feed(cols, sides, wanted, among=None) -> None:
    flags = cols["dss_flags"]
    chosen = (flags != 0xFF) & ((cols["flags"] & 0x02) == 0)
    if among is not None:
        chosen &= among
    rows = np.nonzero(chosen)[0]
    if not len(rows):
        return
    width = np.where(cols["family"][rows] == 4, 4, 16)
    src, dst = cols["src"][rows], cols["dst"][rows]
    sport, dport = cols["sport"][rows], cols["dport"][rows]
    first, inverse = capture.group_directions(cols, rows)
    f = flags[rows]
    seq = cols["seq"][rows].astype(np.int64)
    ssn = cols["dss_ssn"][rows].astype(np.int64)
    dsn = cols["dsn"][rows]
    data_ack = cols["data_ack"][rows]
    checksum = cols["dss_checksum"][rows]
    dlen = cols["dss_len"][rows]
    payload = cols["payload_len"][rows]
    for g, row in enumerate(first):
        w = int(width[row])
        key = (bytes(src[row, :w]), int(sport[row]), bytes(dst[row, :w]), int(dport[row]))
        if wanted is not None and key not in wanted and (key[2], key[3], key[0], key[1]) \
                not in wanted:
            continue
        side = sides.setdefault(key, _Side())
        mine = inverse == g
        fg = f[mine]
        acks = mine & ((f & (_M_ACK | _M_ACK64)) == (_M_ACK | _M_ACK64))
        if acks.any():
            side.widen(int(data_ack[acks].min()), int(data_ack[acks].max()), acked=True)
        maps32 = mine & ((f & (_M_DSN | _M_DSN64)) == _M_DSN) & (dlen > 0)
        if maps32.any():
            d32 = dsn[maps32] & MASK32
            side.lo32 = int(d32.min()) if side.lo32 is None else min(side.lo32, int(d32.min()))
            side.hi32 = int(d32.max()) if side.hi32 is None else max(side.hi32, int(d32.max()))
            side.checksums |= bool((checksum[maps32] >= 0).any())
            u32 = (seq[maps32] - ssn[maps32]) & MASK32
            for value in np.unique(u32):
                side.candidate(int(value))
            with_data = payload[maps32] > 0
            if with_data.any():
                low = int(d32[with_data].min())
                best = min((int(x) for x in u32[with_data][d32[with_data] == low]),
                           key=lambda x: (x - int(u32[0])) & MASK32)
                if side.first_dsn32 is None or low < side.first_dsn32:
                    side.first_dsn32, side.first_u32 = low, best
        maps = mine & ((f & (_M_DSN | _M_DSN64)) == (_M_DSN | _M_DSN64)) & (dlen > 0)
        if not maps.any():
            continue
        side.widen(int(dsn[maps].min()), int(dsn[maps].max()), acked=False)
        side.checksums |= bool((checksum[maps] >= 0).any())
        u = (seq[maps] - ssn[maps]) & MASK32
        with_data = payload[maps] > 0
        for value in np.unique(u):
            side.candidate(int(value))
        if with_data.any():
            one_byte = dlen[maps][with_data] == 1
            d, uu = dsn[maps][with_data], u[with_data]
            _lowest(side, "first", d[~one_byte], uu[~one_byte])
            _lowest(side, "one_byte", d[one_byte], uu[one_byte])
        del fg


def _lowest(side: _Side, name: str, d, u) -> None:
    """Keep in ``side``'s ``{name}_dsn``/``{name}_u`` the lowest of the mapping DSNs ``d``
    (and the smallest seq - SSN among the rows at it, serial order) if below what it has."""
    if not len(d):
        return
    low = int(d.min())
    candidates = [int(x) for x in u[d == low]]
    best = candidates[0]
    for x in candidates[1:]:
        if _serial_less(x, best):
            best = x
    known, known_u = getattr(side, name + "_dsn"), getattr(side, name + "_u")
    if known is None or low < known or (low == known and _serial_less(best, known_u)):
        setattr(side, name + "_dsn", low)
        setattr(side, name + "_u", best)


def _first_byte(side: _Side, back: _Side) -> tuple:
    """(DSN, seq - SSN) where ``side``'s stream is rebuilt from: its lowest mapping, but a
    one-byte mapping below every DATA_ACK the peer (``back``) sent for it is left out: it
    maps a byte acknowledged before the capture began, which is how Linux maps a zero-window
    probe (one byte at the DSN before snd_una, carrying the next byte to send: protocol.c,
    mptcp_sendmsg_frag). Its payload is not the byte at that DSN: a stream started there
    would begin with a one-byte hole. (DSN None: no mapping with data.)"""
    probe, first = side.one_byte_dsn, side.first_dsn
    if probe is None or (first is not None and first <= probe):
        return first, side.first_u
    if first is not None and back.acked_lo is not None and probe < back.acked_lo:
        return first, side.first_u
    return probe, side.one_byte_u


def _expand(value32: int, reference: int) -> int:
    """The 64-bit DSN nearest ``reference`` whose low 32 bits are ``value32`` (RFC 8684
    §3.3.1's expansion, as Linux's expand_seq does against its known position)."""
    candidate = (reference & ~MASK32) | value32
    if candidate - reference > (1 << 31):
        candidate -= 1 << 32
    elif reference - candidate > (1 << 31):
        candidate += 1 << 32
    return candidate & ((1 << 64) - 1)


def _expand_32bit_mappings(sides) -> None:
    """Directions that only showed 32-bit DSNs take their high bits from the 64-bit DATA_ACKs
    the other direction sent for their data (Linux always sends 64-bit DATA_ACKs)."""
    for key, side in sides.items():
        if side.lo is not None or side.lo32 is None:
            continue
        back = sides.get((key[2], key[3], key[0], key[1]))
        if back is None or back.acked_lo is None:
            continue                             # nothing 64-bit to expand against
        reference = back.acked_lo
        side.lo, side.hi = _expand(side.lo32, reference), _expand(side.hi32, reference)
        if side.first_dsn32 is not None:
            side.first_dsn, side.first_u = _expand(side.first_dsn32, reference), side.first_u32


def _place(sides) -> Survey:
    """Cluster the directions into data sequence spaces, pair the spaces into connections."""
    _expand_32bit_mappings(sides)
    # each direction's data falls in its own space; its DATA_ACKs in the other direction's
    intervals = []                           # (lo, hi, (key, "data" | "acked"))
    for key, side in sides.items():
        if side.lo is not None:
            intervals.append((side.lo, side.hi, (key, "data")))
        if side.acked_lo is not None:
            intervals.append((side.acked_lo, side.acked_hi, (key, "acked")))
    intervals.sort(key=lambda item: item[0])
    space_of = {}
    spaces: list[list[int]] = []             # [lo, hi]
    for lo, hi, tag in intervals:
        if spaces and lo - spaces[-1][1] <= GAP:
            spaces[-1][1] = max(spaces[-1][1], hi)
        else:
            spaces.append([lo, hi])
        space_of[tag] = len(spaces) - 1
    out = Survey()
    pair_to_connection = {}
    done = set()
    for key, side in sides.items():
        flow = frozenset([(key[0], key[1]), (key[2], key[3])])
        if flow in done:
            continue
        back_key = (key[2], key[3], key[0], key[1])
        back = sides.get(back_key, _Side())
        # the space of this direction's data: its own mappings, else the peer's DATA_ACKs
        here = space_of.get((key, "data"), space_of.get((back_key, "acked")))
        there = space_of.get((back_key, "data"), space_of.get((key, "acked")))
        if here is None or there is None or here == there:
            continue
        done.add(flow)
        pair = frozenset([here, there])
        if pair not in pair_to_connection:
            pair_to_connection[pair] = len(out.connections)
            out.connections.append({"spaces": (here, there), "first_dsn": {}})
        number = pair_to_connection[pair]
        conn = out.connections[number]
        # roles: the side with the lower port listens (ephemeral ports are high)
        a, b = (key[0], key[1]), (key[2], key[3])
        client, server = (a, b) if a[1] > b[1] else (b, a)
        if conn["first_dsn"] == {}:
            conn["server_space"] = there if client == a else here
        up_space = here if client == a else there
        if conn.get("server_space") == up_space:       # the other flows' roles decide
            client, server = server, client
        isn, checksums = {}, side.checksums or back.checksums
        for name, (src, dst) in (("up", (client, server)), ("down", (server, client))):
            s = sides.get((src[0], src[1], dst[0], dst[1]))
            if s is None:
                continue
            if s.isn_candidate is not None:
                isn[name] = s.isn_candidate
                first_dsn, first_u = _first_byte(s, sides.get((dst[0], dst[1], src[0], src[1]),
                                                             _Side()))
                if first_dsn is not None:
                    first = (first_dsn + ((first_u - s.isn_candidate) & MASK32)) & MASK64
                    known = conn["first_dsn"].get(name)
                    if known is None or first < known:
                        conn["first_dsn"][name] = first
        out.flows[(key[0], key[1], key[2], key[3])] = FlowPlacement(number, client, server, isn,
                                                                   checksums)
    return out
