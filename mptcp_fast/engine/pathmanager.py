"""The path manager of a connection (RFC 8684 §3.4; Linux's in-kernel PM as the model): extra
subflows (MP_JOIN from "subflow" addresses and to announced ones, within the limits), ADD_ADDR
sent (HMAC'd in v1, ADD_ADDR2 or plain in v0, resent until echoed) and received (verified,
echoed, joined), REMOVE_ADDR both ways, MP_PRIO both ways, and the calls a user's own path
manager makes at run time (``join``, ``announce``, ``set_backup``, which the connection hands
on).

A component of ``Connection``: a ``PathManager`` holds the path state (the peer's addresses,
our announcements and their echoes, the signals owed, the join limits) and asks its connection
for the rest only through ``PathOwner``, which Connection implements, as a subflow asks through
``SubflowOwner``. The connection calls it when something happened that concerns the paths
(``fully_established``, an option by type, a timer, a pure ACK to fill); it is given the
endpoint, the Config and the connection's list of live subflows (read, never changed here).
Compiled with the engine (mptcp_fast._cengine.pathmanager, typed by its .pxd): the calls the
connection makes per segment (``signals_owed``, ``flush``, ``next_timer``) are C calls.

    pm = PathManager(connection, endpoint, cid, is_client, connection.subflows)
    pm.fully_established(now)          # the client's joins at the next flush, ADD_ADDRs now
    pm.on_add_addr(sf, option, now)    # and on_remove_addr, on_prio: the peer's signals
    pm.ack_options(sf, data_ack)       # what a pure ACK carries for the path manager, or None
"""

from __future__ import annotations

import ipaddress

try:
    import cython
except ImportError:             # no Cython: the pure backend runs without it
    from .. import _cython_shim as cython

from ..wire import crypto
from ..wire import options as opt
from ..errors import StateError
from mptcp_fast.engine import events as ev
from mptcp_fast.engine.events import CloseReason

if not cython.compiled:     # compiled: the C enum, cimported by pathmanager.pxd
    from .subflow import CLOSED, ESTABLISHED, SYN_RCVD, SYN_SENT

    def _untrack(obj) -> None:
        """Compiled, the collector stops tracking ``obj`` (pyx/mf_gc.pxd: numbers and
        options only, never in a cycle); the pure run has nothing to do."""

__all__ = ["PathManager", "PathOwner", "Announcement", "ANNOUNCE_TRIES"]

ANNOUNCE_TRIES = 8      # ADD_ADDR sent at most this often (v1) before it is given up
ECHOES_OWED = 16        # ADD_ADDR echoes queued at most (an ADD_ADDR storm costs nothing)


class _Join:
    """MP_JOIN state of an additional subflow (RFC 8684 §3.2)."""
    __slots__ = ("local_nonce", "remote_nonce", "established", "peer_backup", "local_backup")

    def __init__(self, local_nonce: int, remote_nonce=None, local_backup: bool = False):
        self.local_nonce, self.remote_nonce = local_nonce, remote_nonce
        self.established = False
        self.peer_backup = False          # the peer's B flag (its SYN or SYN/ACK)
        self.local_backup = local_backup  # ours: the local address is a backup address


class Announcement:
    """One of our ADD_ADDRs on its way (RFC 8684 §3.4.1): sent (again) once ``resend_at`` is
    reached, ``tries`` times so far, until the peer echoes it (v1) or the tries run out."""
    __slots__ = ("option", "resend_at", "tries")

    def __init__(self, option, resend_at: float):
        self.option, self.resend_at, self.tries = option, resend_at, 0


_TEXTS: dict[bytes, str] = {}             # the addresses seen, as text (a host has a few)


def _text(address: bytes) -> str:
    """A packed address as text (events, stats, messages): a connection's events name its
    addresses a dozen times, so the texts of the first 256 addresses seen are kept."""
    text = _TEXTS.get(address)
    if text is None:
        text = str(ipaddress.ip_address(address))
        if len(_TEXTS) < 256:
            _TEXTS[address] = text
    return text


def first_of_family(addresses, remote: bytes):
    """The first of ``addresses`` of ``remote``'s family (a subflow never mixes IPv4 and
    IPv6), or None. (A loop: compiled, a generator expression costs a generator object and
    its close per call.)"""
    for address in addresses:
        if len(address) == len(remote):
            return address
    return None


def _local_for(initial: bytes, addresses, remote: bytes):
    """The local address a join to ``remote`` starts from: the initial subflow's, else the
    first of the endpoint's ``addresses`` of the same family; None when there is none."""
    if len(initial) == len(remote):
        return initial
    return first_of_family(addresses, remote)


def _live(state: int) -> bool:
    """A subflow in ``state`` is opening or carrying data."""
    return state == SYN_SENT or state == SYN_RCVD or state == ESTABLISHED


def _live_subflows_to(subflows, address: bytes, port: int) -> int:
    """How many of ``subflows`` to (address, port) are opening or carrying data (not closing
    with FINs, not closed)."""
    count = 0
    for sf in subflows:
        if sf.remote == address and sf.rport == port and _live(sf.state) \
                and not sf.fin_sent and not sf.fin_received:
            count += 1
    return count


def _open_subflows(subflows) -> int:
    """How many of ``subflows`` are not CLOSED (the ones max_subflows counts)."""
    count = 0
    for sf in subflows:
        if sf.state != CLOSED:
            count += 1
    return count


def _in_flight(announcing: dict) -> bool:
    """Whether one of our ADD_ADDRs still waits for its echo (tries left)."""
    for entry in announcing.values():
        if entry.tries <= ANNOUNCE_TRIES:
            return True
    return False


def _announcement_due(announcing: dict, now: float) -> bool:
    """An ADD_ADDR is due to be sent (again) and has tries left."""
    for entry in announcing.values():
        if entry.resend_at <= now and entry.tries <= ANNOUNCE_TRIES:
            return True
    return False


def _subflows_to(subflows, address_id: int) -> int:
    """How many of ``subflows`` go to the peer's address ``address_id``."""
    count = 0
    for sf in subflows:
        if sf.remote_address_id == address_id:
            count += 1
    return count


def _subflow(subflows, sid: int):
    """The subflow of ``subflows`` with id ``sid``, or None."""
    for sf in subflows:
        if sf.sid == sid:
            return sf
    return None


class PathOwner:
    """Everything the path manager asks of its connection (``Connection`` implements this):
    facts about the connection and the few things only the connection does (open a subflow,
    queue an event). What it needs besides comes in through its constructor: the endpoint (its
    addresses, ports, nonces, the time), the Config and the list of live subflows."""
    __slots__ = ()        # an interface: methods only

    def mptcp_keys(self):
        """The connection's ``crypto.KeyContext`` once both keys are known, else None."""
        raise NotImplementedError

    def ended(self):
        """Its CloseReason once the connection is gone, else None."""
        raise NotImplementedError

    def fell_back(self) -> bool:
        """The connection is plain TCP now (RFC 8684 §3.7): no MPTCP signal goes or counts."""
        raise NotImplementedError

    def is_fully_established(self) -> bool:
        """RFC 8684 §3.1: the peer has our key too."""
        raise NotImplementedError

    def join_refusal(self):
        """Why no subflow may join now (a sentence), or None."""
        raise NotImplementedError

    def initial_path(self) -> tuple:
        """The initial subflow's ((local address, port), (remote address, port))."""
        raise NotImplementedError

    def open_subflow(self, local: bytes, lport: int, remote: bytes, rport: int, now: float,
                     join, backup: bool, remote_address_id: int):
        """A new subflow of the connection (not yet sending anything), registered."""
        raise NotImplementedError

    def usable_subflows(self) -> list:
        """The subflows that can carry a segment now."""
        raise NotImplementedError

    def emit(self, event) -> None:
        """Queue ``event`` for the user."""
        raise NotImplementedError

    def option_ignored(self) -> None:
        """An MPTCP option was not acted upon (the connection's ``ignored_options``)."""
        raise NotImplementedError


class PathManager:
    """See the module text. Made by the Connection, which it serves."""

    def __init__(self, owner, endpoint, cid: int, is_client: bool, subflows: list):
        self.owner, self.endpoint, self.id, self.is_client = owner, endpoint, cid, is_client
        self.config = endpoint.config
        self.version = self.config.version
        self.subflows = subflows                    # the connection's live subflows (read only)
        # peer address id -> (address, port) announced
        self.remote_addresses: dict[int, tuple[bytes, int]] = {}
        self.pending_echo: list[opt.Option] = []    # ADD_ADDR echoes owed
        self.pending_remove: list[int] = []         # our address ids to REMOVE_ADDR
        self.announcing: dict[int, Announcement] = {}   # address id -> Announcement
        self.announced: set[int] = set()            # address ids the peer has (echoed)
        if cython.compiled:                         # options and numbers: never in a cycle
            _untrack(self.pending_echo)
            _untrack(self.pending_remove)
            _untrack(self.announced)
        self.add_addr_accepted = 0                  # announced addresses joined (the limit's)
        self.peer_denies_initial = False            # the SYN/ACK's C flag (RFC 8684 §3.1)
        self.joins_due = False                      # the client's joins open at the next flush
        self.bad_add_addr = 0                       # ADD_ADDRs whose HMAC failed
        self.removal_refuted = 0                    # REMOVE_ADDRs whose path answered its probe

    # ============================================================ the user's calls
    def join(self, local_address, remote, backup, now) -> int:
        """``Connection.join``: one more subflow from ``local_address`` to ``remote``."""
        owner = self.owner
        if owner.mptcp_keys() is None or owner.ended():
            raise StateError("join() needs an established connection")
        ending = owner.join_refusal()
        if ending is not None:
            raise StateError(f"join(): {ending}; the peer would refuse the subflow")
        local = self.endpoint.own_address(local_address)
        initial = owner.initial_path()[1]
        if remote is None:
            remote_address, port = initial[0], initial[1]
        else:
            remote_address = crypto._packed(remote[0])
            port = remote[1]
        if self.peer_denies_initial and (remote_address, port) == (initial[0], initial[1]):
            raise StateError("join(): the server takes no subflow to its initial address and port "
                             "(flag C of its MP_CAPABLE, RFC 8684 §3.1)")
        if len(local) != len(remote_address):
            raise ValueError(f"join() from {_text(local)} to {_text(remote_address)}: a subflow "
                             f"joins addresses of one family")
        now = self.endpoint.now if now is None else now
        sf = self._open_join(local, remote_address, port, now, backup)
        if sf is None:
            raise StateError(f"no room for another subflow (max_subflows={self.config.max_subflows})")
        return sf.sid

    def announce(self, address, port, now) -> int:
        """``Connection.announce``: ADD_ADDR for one of our addresses (RFC 8684 §3.4.1, HMAC'd
        with our key), resent until the peer echoes it; returns its address id."""
        owner = self.owner
        keys = owner.mptcp_keys()
        if keys is None or owner.ended():
            raise StateError("announce() needs an established connection")
        packed = self.endpoint.own_address(address)
        address_id = self.endpoint.address_id(owner, packed)
        if self.version == 1:                        # RFC 8684 §3.4.1: HMAC'd, echoed
            option: opt.Option = opt.AddAddr(address_id, packed, port,
                                             keys.add_addr_hmac(address_id, packed, port))
        elif self.config.add_addr2:                  # the rfc6824bis-00 ADD_ADDR2: HMAC'd
            option = opt.AddAddr2(address_id, packed, port,
                                  keys.add_addr_hmac(address_id, packed, port, addaddr2=True))
        else:                                        # RFC 6824 §3.4.1: no HMAC at all
            option = opt.AddAddrV0(address_id, packed, port)
        now = self.endpoint.now if now is None else now
        self.announcing[address_id] = Announcement(option, now)
        self.endpoint.touch(owner)
        return address_id

    def set_backup(self, subflow_id: int, backup: bool) -> None:
        """``Connection.set_backup``: MP_PRIO to the peer, and the subflow a backup (or not) to
        us too (RFC 8684 §3.3.8)."""
        owner = self.owner
        sf = _subflow(self.subflows, subflow_id)
        if sf is None or owner.fell_back() or owner.ended():
            raise StateError(f"no live MPTCP subflow {subflow_id}")
        sf.announce_backup(bool(backup))
        self.endpoint.touch(owner)

    def address_removed(self, address: bytes, address_id: int, now: float) -> None:
        """Our ``address`` is gone: its subflows are reset and REMOVE_ADDR tells the peer on the
        others (RFC 8684 §3.4.2)."""
        for sf in list(self.subflows):
            if sf.local == address:
                sf.close(now, CloseReason.ADDRESS_REMOVED, reset=True)
        self.announcing.pop(address_id, None)
        self.announced.discard(address_id)
        if not self.owner.fell_back() and not self.owner.ended():
            self.pending_remove.append(address_id)
            for sf in self.subflows:
                if sf.usable:
                    sf.request_ack()
                    break

    # ============================================================ joins
    def _open_join(self, local: bytes, remote: bytes, port: int, now: float, backup=None):
        if _open_subflows(self.subflows) >= self.config.max_subflows or len(local) != len(remote):
            return None                               # full, or across address families
        if backup is None:
            backup = local in self.config.backup_addresses
        join = _Join(self.endpoint.random.nonce(), local_backup=bool(backup))
        lport = self.endpoint.new_port(local, remote, port, now)
        sf = self.owner.open_subflow(local, lport, remote, port, now, join, backup, 0)
        sf.send_syn(now)
        return sf

    def _start_joins(self, now: float) -> None:
        """Fully established client: a subflow from each of its "subflow" addresses (every
        other local address of the family by default) to the server's address. Called when
        the segment that made it fully established has been taken whole (``joins_due``, at
        the next flush), as Linux's path manager works after it: a DATA_FIN in that segment
        leaves no join to open."""
        for address in self.endpoint.addresses:
            if not self.join_from(address, now):
                break

    def join_from(self, address: bytes, now: float) -> bool:
        """The path manager's rule for one local address of a client (False: no room left)."""
        owner = self.owner
        wanted = self.config.subflow_addresses
        if not self.is_client or not owner.is_fully_established() \
                or owner.join_refusal() is not None or self.peer_denies_initial:
            return True
        local, remote = owner.initial_path()
        if len(address) != len(remote[0]) or address == local[0] \
                or (wanted is not None and address not in wanted):
            return True
        for sf in self.subflows:
            if sf.local == address:
                return True
        return self._open_join(address, remote[0], remote[1], now) is not None

    def accept_join(self, seg, join_syn, now: float) -> bool:
        """Server side: an MP_JOIN SYN for this connection (token already matched). Refused
        when the connection fell back or has no keys (RFC 8684 §3.7: no subflow may join a
        connection that fell back; without keys no HMAC can be checked)."""
        owner = self.owner
        if owner.mptcp_keys() is None or owner.ended() \
                or _open_subflows(self.subflows) >= self.config.max_subflows or owner.fell_back():
            return False
        if self.config.deny_join_initial and (seg.dst, seg.dport) == tuple(owner.initial_path()[0]):
            return False                              # our SYN/ACK said C (RFC 8684 §3.1)
        # RFC 8684 §3.2: our SYN/ACK's B flag is our own wish (the local address is one of
        # Config.backup_addresses, as Linux's backup endpoint flag applies to subflows both
        # ways); the subflow is a backup to our scheduler when either side asked for it
        local_backup = seg.dst in self.config.backup_addresses
        join = _Join(self.endpoint.random.nonce(), join_syn.nonce, local_backup)
        join.peer_backup = join_syn.backup
        sf = owner.open_subflow(seg.dst, seg.dport, seg.src, seg.sport, now, join,
                                join_syn.backup or local_backup, join_syn.address_id)
        sf.accept_syn(seg, now)
        return True

    def peer_flags(self, denies_initial: bool) -> None:
        """The server's MP_CAPABLE flag C (RFC 8684 §3.1): no subflow to its initial address
        and port (Linux: net.mptcp.allow_join_initial_addr_port=0)."""
        self.peer_denies_initial = denies_initial

    def fully_established(self, now: float) -> None:
        """Client: the server has our key (RFC 8684 §3.1): joins and announcements may start,
        the joins once this segment was taken whole (``flush``)."""
        self.joins_due = True
        self.endpoint.touch(self.owner)
        self.signal(now)

    # ============================================================ announcing
    def signal(self, now: float) -> None:
        """Announce the "signal" addresses (Config.signal_addresses) that the endpoint has. In
        v1 one at a time, the next once the last was echoed or given up, as Linux's path
        manager does: Linux takes one received ADD_ADDR at a time and drops, unechoed, one
        that arrives while it still handles the last (its AddAddrDrop counter)."""
        owner = self.owner
        if owner.fell_back() or owner.ended() or owner.mptcp_keys() is None:
            return
        if self.version == 1 and _in_flight(self.announcing):
            return
        initial = owner.initial_path()[0][0]
        for address in self.endpoint.addresses:
            if address in self.config.signal_addresses and address != initial:
                address_id = self.endpoint.address_id(owner, address)
                if address_id not in self.announcing and address_id not in self.announced:
                    self.announce(address, None, now)
                    self.announced.add(address_id)
                    if self.version == 1:
                        return

    # ============================================================ the peer's signals
    def on_prio(self, sf, o) -> None:
        """MP_PRIO (RFC 8684 §3.3.8): the peer asks us to treat the subflow it came on as a
        backup (or no longer); the v0 form with an address id is ignored as Linux does."""
        if o.address_id is not None and self.version == 1:
            self.owner.option_ignored()               # Linux ignores the v0 form
            return
        targets = [sf] if o.address_id is None else \
            [s for s in self.subflows if s.remote_address_id == o.address_id]
        for target in targets:
            if target.backup != o.backup:
                target.set_backup_by_peer(o.backup)
                self.owner.emit(ev.SubflowPriority(self.id, target.sid, o.backup, True))

    def on_remove_addr(self, o, now: float) -> None:
        """REMOVE_ADDR (RFC 8684 §3.4.2): each subflow to those peer addresses is probed with a
        keepalive first and reset only when the path does not answer (what it held is then
        sent again on the others); a path that answers is kept. Passing TCP's checks (RFC 5961)
        makes a blind forgery costly, not impossible: the probe makes it harmless. Linux
        tears the subflows down at once; we are stricter (docs/hardening.md)."""
        removed = o.address_ids
        for other in list(self.subflows):
            if other.remote_address_id in removed:
                other.probe_removal(now)
        for address_id in removed:                    # forgotten with its last subflow
            if _subflows_to(self.subflows, address_id) == 0:
                self.remote_addresses.pop(address_id, None)

    def path_answered(self, sf) -> None:
        """The subflow a REMOVE_ADDR named answered its probe: the REMOVE_ADDR was stale or
        forged."""
        self.removal_refuted += 1

    def path_silent(self, sf) -> None:
        """The subflow a REMOVE_ADDR named did not answer: its address is forgotten."""
        self.remote_addresses.pop(sf.remote_address_id, None)

    def on_add_addr(self, sf, o, now: float) -> None:
        """RFC 8684 §3.4.1: an ADD_ADDR whose HMAC fails is dropped silently; a valid one is
        echoed and, if allowed, joined."""
        keys = self.owner.mptcp_keys()
        if keys is None:
            return
        kind = type(o)
        if (kind is opt.AddAddr) != (self.version == 1) or \
                (kind is opt.AddAddr2) != (self.version == 0 and self.config.add_addr2):
            self.owner.option_ignored()               # a form our profile does not speak
            return
        if kind is opt.AddAddrV0:                     # RFC 6824: nothing to verify; this is
            self._accept_address(o, now)              # the hijack the IETF-87 slides show
            return
        if kind is opt.AddAddr2:
            if not keys.verify_add_addr(o):
                self.bad_add_addr += 1
                return
            self._accept_address(o, now)
            return
        if o.echo:                                    # the peer has our announcement
            mine = self.announcing.get(o.address_id)
            if mine is not None and mine.option.address_packed == o.address_packed:
                del self.announcing[o.address_id]
                self.announced.add(o.address_id)
                self.signal(now)                      # the next address, if any
            return
        if not keys.verify_add_addr(o):
            self.bad_add_addr += 1
            return
        if len(self.pending_echo) < ECHOES_OWED:     # bounded: an ADD_ADDR storm costs nothing
            self.pending_echo.append(opt.AddAddr(o.address_id, o.address_packed, o.port))
        sf.request_ack()
        self._accept_address(o, now)

    def _accept_address(self, o, now: float) -> None:
        """An announced address we believe: remember it and, within the limits, join it."""
        owner = self.owner
        local, remote = owner.initial_path()
        port = o.port if o.port is not None else remote[1]
        target = (o.address_packed, port)
        if self.peer_denies_initial and target == (remote[0], remote[1]):
            owner.option_ignored()                    # C flag: never the initial address/port
            return
        # announced again (Linux resends until echoed, and announces again an endpoint it
        # deleted and re-added): joined again unless a live subflow goes there, as Linux skips
        # a join only while one exists; a subflow closing with FINs does not count
        known = self.remote_addresses.get(o.address_id) == target
        if _live_subflows_to(self.subflows, target[0], port):
            self.remote_addresses[o.address_id] = target
            return
        self.remote_addresses[o.address_id] = target
        if self.is_client and self.config.join_announced and owner.join_refusal() is None \
                and (known or self.add_addr_accepted < self.config.max_add_addr_accepted):
            joined_from = _local_for(local[0], self.endpoint.addresses, target[0])
            if joined_from is None:                   # no address of that family to join from
                owner.option_ignored()
                return
            if not known:                             # counted once per announced address
                self.add_addr_accepted += 1
            self._open_join(joined_from, target[0], port, now)

    # ============================================================ the connection's turns
    def signals_owed(self) -> bool:
        """An echo, an announcement or a REMOVE_ADDR waits for a pure ACK (so the next pure ACK
        is not the plain one)."""
        return bool(self.pending_echo) or bool(self.announcing) or bool(self.pending_remove)

    def ack_options(self, sf, data_ack):
        """The path manager's options for a pure ACK on ``sf``, or None when it has none due:
        an ADD_ADDR echo alone (as Linux sends it), REMOVE_ADDR (once, on a live subflow) and
        MP_PRIO (on the subflow it is about) with the DATA_ACK ``data_ack`` (None: no data level
        yet, and they are dropped), or one of our ADD_ADDRs due (sent again after an RTO)."""
        if self.pending_echo:                         # Linux: ADD_ADDR alone on a pure ACK
            return [self.pending_echo.pop(0)]
        extra = []
        if self.pending_remove and sf.usable:         # REMOVE_ADDR, once, on a live subflow
            extra.append(opt.RemoveAddr(self.pending_remove[:8]))
            del self.pending_remove[:8]
        if sf.take_pending_prio():                    # MP_PRIO on the subflow it is about
            extra.append(opt.MpPrio(sf.backup) if self.version == 1
                         else opt.MpPrio(sf.backup, sf.local_address_id))   # RFC 6824 §3.3.8
        if extra and data_ack is not None:
            return extra + [opt.Dss(data_ack, True)]
        if not self.announcing:
            return None
        now = self.endpoint.now
        given_up = False
        for entry in self.announcing.values():
            if entry.resend_at <= now and sf.usable:  # due: send it, and again after an RTO
                entry.tries += 1
                entry.resend_at = now + min(sf.rtt.rto * (2 ** entry.tries), 60.0)
                if entry.tries > (ANNOUNCE_TRIES if self.version == 1 else 2):
                    given_up = True                   # never echoed (v0 has no echo): done
                    continue
                return [entry.option]
        if given_up and self.version == 1:
            self.signal(now)                          # the next address may go
        return None

    def flush(self, now: float) -> None:
        """The connection's flush, after what could be sent was: the joins due, and an ACK to
        carry an ADD_ADDR that is due."""
        if self.joins_due:                            # once what can be sent was (a DATA_FIN
            self.joins_due = False                    # among it)
            self._start_joins(now)
        if self.announcing and _announcement_due(self.announcing, now):
            usable = self.owner.usable_subflows()
            if usable:
                usable[0].request_ack()

    def next_timer(self):
        """When an ADD_ADDR is next due (tries left), or None."""
        if not self.announcing:              # (asked after every flush: mostly none)
            return None
        best = None
        for entry in self.announcing.values():
            if entry.tries <= ANNOUNCE_TRIES and (best is None or entry.resend_at < best):
                best = entry.resend_at
        return best

    def handle_timer(self, now: float) -> None:
        """Nothing to carry the ADD_ADDRs that are due: they try again a second later."""
        if self.announcing and not self.owner.usable_subflows():
            for entry in self.announcing.values():
                entry.resend_at = max(entry.resend_at, now + 1.0)
