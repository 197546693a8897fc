"""The path manager's half of a connection (RFC 8684 §3.4; Linux's in-kernel PM as the model):
extra subflows (MP_JOIN from "subflow" addresses and to announced ones, within the limits),
ADD_ADDR sent (HMAC'd in v1, ADD_ADDR2 or plain in v0, resent until echoed) and received
(verified, echoed, joined), REMOVE_ADDR both ways, MP_PRIO both ways, and the calls a user's
own path manager makes at run time (``join``, ``announce``, ``set_backup``). A mixin of
``Connection``: it reads and writes the connection's state.
"""

from __future__ import annotations

import ipaddress

from ..wire import crypto
from ..wire import options as opt
from ..errors import StateError
from . import events as ev
from .events import CloseReason
from .subflow import CLOSED, ESTABLISHED, SYN_RCVD, SYN_SENT

__all__ = ["PathManagement", "Announcement"]

_LIVE = (SYN_SENT, SYN_RCVD, ESTABLISHED)


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


def _text(address: bytes) -> str:
    """A packed address as text (events, stats, messages)."""
    return str(ipaddress.ip_address(address))


def _local_for(initial: bytes, addresses, remote: bytes):
    """The local address a join to ``remote`` starts from: the initial subflow's, else the
    first of the endpoint's ``addresses`` of the same family (a subflow never mixes IPv4 and
    IPv6); None when there is none."""
    if len(initial) == len(remote):
        return initial
    for address in addresses:
        if len(address) == len(remote):
            return address
    return None


def _live_subflows_to(subflows, address: bytes, port: int) -> int:
    """How many of ``subflows`` to (address, port) are opening or carrying data (not closing
    with FINs, not closed)."""
    count = 0
    for sf in subflows:
        if sf.remote == address and sf.rport == port and sf.state in _LIVE \
                and not sf.fin_sent and not sf.fin_received:
            count += 1
    return count


ANNOUNCE_TRIES = 8      # ADD_ADDR sent at most this often (v1) before it is given up


def _in_flight(announcing: dict) -> bool:
    """Whether one of our ADD_ADDRs still waits for its echo (tries left)."""
    for entry in announcing.values():
        if entry.tries <= ANNOUNCE_TRIES:
            return True
    return False


def _subflows_to(subflows, address_id: int) -> int:
    """How many of ``subflows`` go to the peer's address ``address_id``."""
    count = 0
    for sf in subflows:
        if sf.remote_address_id == address_id:
            count += 1
    return count


class PathManagement:
    """The path-management methods of Connection (see the module text)."""
    __slots__ = ()        # methods only: the state is the Connection's (a compiled class)

    def join(self, local_address, remote=None, *, backup: bool | None = None,
             now: float | None = None) -> int:
        """Open one more subflow from ``local_address`` (an address of the endpoint) to ``remote``
        ((address, port); the initial subflow's by default); returns its subflow id.

        Args:
            local_address: one of the endpoint's addresses, text or packed.
            remote: the peer's (address, port); the initial subflow's by default.
            backup: open it as a backup subflow (MP_JOIN B flag); by default as
                ``Config.backup_addresses`` says for ``local_address``.
            now: the current time (the endpoint's last one by default).

        Raises:
            StateError: the connection is not established, is ending, fell back to TCP, has
                ``Config.max_subflows`` subflows, or the server refuses joins to ``remote``.
            ValueError: ``local_address`` is not the endpoint's, or the two addresses are of
                different families.
        """
        if not self.established or self.keys is None or self.terminated:
            raise StateError("join() needs an established connection")
        ending = self._no_join()
        if ending is not None:
            raise StateError(f"join(): {ending}; the peer would refuse the subflow")
        local = self.endpoint.own_address(local_address)
        if remote is None:
            remote_address, port = self.remote[0], self.remote[1]
        else:
            remote_address = crypto._packed(remote[0])
            port = remote[1]
        if self.peer_denies_initial and (remote_address, port) == (self.remote[0], self.remote[1]):
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

    def announce(self, address, port: int | None = None, now: float | None = None) -> int:
        """Announce one of our addresses to the peer with ADD_ADDR (RFC 8684 §3.4.1, HMAC'd
        with our key), resent until the peer echoes it; returns its address id.

        Args:
            address: one of the endpoint's addresses, text or packed.
            port: a port to announce with it (none by default).
            now: the current time (the endpoint's last one by default).

        Raises:
            StateError: the connection is not established or has ended.
            ValueError: ``address`` is not one of the endpoint's.
        """
        if self.keys is None or self.terminated:
            raise StateError("announce() needs an established connection")
        packed = self.endpoint.own_address(address)
        address_id = self.endpoint.address_id(self, packed)
        if self.version == 1:                        # RFC 8684 §3.4.1: HMAC'd, echoed
            option = opt.AddAddr(address_id, packed, port,
                                 self.keys.add_addr_hmac(address_id, packed, port))
        elif self.config.add_addr2:                  # the rfc6824bis-00 ADD_ADDR2: HMAC'd
            option = opt.AddAddr2(address_id, packed, port,
                                  self.keys.add_addr_hmac(address_id, packed, port, addaddr2=True))
        else:                                        # RFC 6824 §3.4.1: no HMAC at all
            option = opt.AddAddrV0(address_id, packed, port)
        now = self.endpoint.now if now is None else now
        self.announcing[address_id] = Announcement(option, now)
        self.endpoint.touch(self)
        return address_id

    def _open_join(self, local: bytes, remote: bytes, port: int, now: float, backup=None):
        live = [s for s in self.subflows if s.state != CLOSED]
        if len(live) >= self.config.max_subflows or len(local) != len(remote):
            return None                               # full, or across address families
        if backup is None:
            backup = local in self.config.backup_addresses
        join = _Join(self.endpoint.random.nonce(), local_backup=bool(backup))
        lport = self.endpoint.new_port(local, remote, port, now)
        sf = self._new_subflow(local, lport, remote, port, now, join=join, backup=backup)
        sf.send_syn(now)
        return sf

    def _no_join(self):
        """Why no subflow may join now, or None. Linux accepts a join only while its MPTCP
        socket is ESTABLISHED and fully established (mptcp_can_accept_new_subflow), else a RST
        with MP_TCPRST "administratively prohibited": not once it has our DATA_FIN in order
        (CLOSE_WAIT) or has closed its own side. So none once our DATA_FIN is sent or next to
        go (close() with nothing left before it), or the peer's has arrived in order. Data still
        waiting behind a close() may yet be carried by a join, which the peer, not having our
        DATA_FIN, accepts; Linux's client opens none from FIN_WAIT_1 (mptcp_is_fully_established
        in __mptcp_subflow_connect)."""
        if self.terminated:
            return f"the connection has ended ({self.terminated})"
        if self.fallback:
            return "the connection fell back to TCP (RFC 8684 §3.7)"
        if self.local_closed and not self.unsent:
            return "our DATA_FIN is sent or next to go (close() or end_stream)"
        if self.queue is not None and self.queue.eof:
            return "the peer's DATA_FIN has arrived"
        return None

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
        wanted = self.config.subflow_addresses
        if not self.is_client or not self.fully_established or self._no_join() is not None \
                or self.peer_denies_initial \
                or len(address) != len(self.remote[0]) or address == self.local[0] \
                or (wanted is not None and address not in wanted) \
                or any(s.local == address for s in self.subflows):
            return True
        return self._open_join(address, self.remote[0], self.remote[1], now) is not None

    def signal(self, now: float) -> None:
        """Announce the "signal" addresses (Config.signal_addresses) that the endpoint has. In
        v1 one at a time, the next once the last was echoed or given up, as Linux's path
        manager does: Linux takes one received ADD_ADDR at a time and drops, unechoed, one
        that arrives while it still handles the last (its AddAddrDrop counter)."""
        if self.fallback or self.terminated or self.keys is None:
            return
        if self.version == 1 and _in_flight(self.announcing):
            return
        for address in self.endpoint.addresses:
            if address in self.config.signal_addresses and address != self.local[0]:
                address_id = self.endpoint.address_id(self, address)
                if address_id not in self.announcing and address_id not in self.announced:
                    self.announce(address, now=now)
                    self.announced.add(address_id)
                    if self.version == 1:
                        return

    def accept_join(self, seg, join_syn, now: float) -> bool:
        """Server side: an MP_JOIN SYN for this connection (token already matched). Refused
        when the connection fell back or has no keys (RFC 8684 §3.7: no subflow may join a
        connection that fell back; without keys no HMAC can be checked)."""
        live = [s for s in self.subflows if s.state != CLOSED]
        if not self.established or self.terminated or len(live) >= self.config.max_subflows \
                or self.fallback or self.keys is None:
            return False
        if self.config.deny_join_initial and (seg.dst, seg.dport) == tuple(self.local):
            return False                              # our SYN/ACK said C (RFC 8684 §3.1)
        # RFC 8684 §3.2: our SYN/ACK's B flag is our own wish (the local address is one of
        # Config.backup_addresses, as Linux's backup endpoint flag applies to subflows both
        # ways); the subflow is a backup to our scheduler when either side asked for it
        local_backup = seg.dst in self.config.backup_addresses
        join = _Join(self.endpoint.random.nonce(), join_syn.nonce, local_backup)
        join.peer_backup = join_syn.backup
        sf = self._new_subflow(seg.dst, seg.dport, seg.src, seg.sport, now, join=join,
                               backup=join_syn.backup or local_backup,
                               remote_address_id=join_syn.address_id)
        sf.accept_syn(seg, now)
        return True

    def _on_prio(self, sf, o, seg, now: float) -> None:
        """MP_PRIO (RFC 8684 §3.3.8): the peer asks us to treat the subflow it came on as a
        backup (or no longer); the v0 form with an address id is ignored as Linux does."""
        if o.address_id is not None and self.version == 1:
            self.ignored_options += 1                 # Linux ignores the v0 form
            return
        targets = [sf] if o.address_id is None else \
            [s for s in self.subflows if s.remote_address_id == o.address_id]
        for target in targets:
            if target.backup != o.backup:
                target.set_backup_by_peer(o.backup)
                self._event(ev.SubflowPriority(self.id, target.sid, o.backup, True))

    def _on_remove_addr(self, sf, o, seg, now: float) -> None:
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

    def set_backup(self, subflow_id: int, backup: bool, now: float | None = None) -> None:
        """Ask the peer to use subflow ``subflow_id`` as a backup (or not) with MP_PRIO, and use
        it so ourselves (RFC 8684 §3.3.8).

        Raises:
            StateError: no live MPTCP subflow has that id (or the connection fell back).
        """
        sf = next((s for s in self.subflows if s.sid == subflow_id), None)
        if sf is None or self.fallback or self.terminated:
            raise StateError(f"no live MPTCP subflow {subflow_id}")
        sf.announce_backup(bool(backup))
        self.endpoint.touch(self)

    def address_removed(self, address: bytes, address_id: int, now: float) -> None:
        """Our ``address`` is gone: its subflows are reset and REMOVE_ADDR tells the peer on the
        others (RFC 8684 §3.4.2)."""
        for sf in list(self.subflows):
            if sf.local == address:
                sf.close(now, CloseReason.ADDRESS_REMOVED, reset=True)
        self.announcing.pop(address_id, None)
        self.announced.discard(address_id)
        if not self.fallback and not self.terminated:
            self.pending_remove.append(address_id)
            for sf in self.subflows:
                if sf.usable:
                    sf.request_ack()
                    break

    def _on_add_addr(self, sf, o, seg, now: float) -> None:
        """RFC 8684 §3.4.1: an ADD_ADDR whose HMAC fails is dropped silently; a valid one is
        echoed and, if allowed, joined."""
        if self.keys is None:
            return
        kind = type(o)
        if (kind is opt.AddAddr) != (self.version == 1) or \
                (kind is opt.AddAddr2) != (self.version == 0 and self.config.add_addr2):
            self.ignored_options += 1                 # a form our profile does not speak
            return
        if kind is opt.AddAddrV0:                     # RFC 6824: nothing to verify; this is
            self._accept_address(sf, o, now)          # the hijack the IETF-87 slides show
            return
        if kind is opt.AddAddr2:
            if not self.keys.verify_add_addr(o):
                self.bad_add_addr += 1
                return
            self._accept_address(sf, o, now)
            return
        if o.echo:                                    # the peer has our announcement
            mine = self.announcing.get(o.address_id)
            if mine is not None and mine.option.address_packed == o.address_packed:
                del self.announcing[o.address_id]
                self.announced.add(o.address_id)
                self.signal(now)                      # the next address, if any
            return
        if not self.keys.verify_add_addr(o):
            self.bad_add_addr += 1
            return
        if len(self.pending_echo) < 16:              # bounded: an ADD_ADDR storm costs nothing
            self.pending_echo.append(opt.AddAddr(o.address_id, o.address_packed, o.port))
        sf.request_ack()
        self._accept_address(sf, o, now)

    def _accept_address(self, sf, o, now: float) -> None:
        """An announced address we believe: remember it and, within the limits, join it."""
        port = o.port if o.port is not None else self.remote[1]
        target = (o.address_packed, port)
        if self.peer_denies_initial and target == (self.remote[0], self.remote[1]):
            self.ignored_options += 1                 # C flag: never the initial address/port
            return
        # announced again (Linux resends until echoed, and announces again an endpoint it
        # deleted and re-added): joined again unless a live subflow goes there, as Linux skips
        # a join only while one exists; a subflow closing with FINs does not count
        known = self.remote_addresses.get(o.address_id) == target
        if _live_subflows_to(self.subflows, target[0], port):
            self.remote_addresses[o.address_id] = target
            return
        self.remote_addresses[o.address_id] = target
        if self.is_client and self.config.join_announced and self._no_join() is None \
                and (known or self.add_addr_accepted < self.config.max_add_addr_accepted):
            local = _local_for(self.local[0], self.endpoint.addresses, target[0])
            if local is None:                         # no address of that family to join from
                self.ignored_options += 1
                return
            if not known:                             # counted once per announced address
                self.add_addr_accepted += 1
            self._open_join(local, target[0], port, now)
