"""What an Endpoint can be told: one frozen dataclass, checked when it is made.

Defaults follow Linux where Linux has one (noted per field); tests shorten the timers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import _check
from .cc import CONTROLLERS
from .scheduler import SCHEDULERS

__all__ = ["Config", "PROFILES"]

PROFILES = ("v1", "v0", "v0+add_addr2")


@dataclass(frozen=True)
class Config:
    """What an ``Endpoint`` and its connections do: a frozen dataclass, every field checked
    when it is made. Defaults follow Linux where Linux has one.

        Config()                                            # MPTCP v1, as Linux by default
        Config(congestion_control="olia", scheduler="ecf", checksums=True)
        Config(profile="v0")                                # RFC 6824
        dataclasses.replace(config, offload=True)           # a changed copy

    Attributes:
        profile: "v1" (RFC 8684), "v0" (RFC 6824) or "v0+add_addr2" (v0 with the
            HMAC-protected ADD_ADDR2 of the rfc6824bis-00 era).
        checksums: ask for DSS checksums (either side asking turns them on).
        congestion_control: "lia" (coupled, RFC 6356), "olia", "balia", "reno" or "cubic".
        hystart: leave slow start when the queue grows (RFC 9406, as Linux's CUBIC).
        scheduler: "lowest-rtt" (Linux's default), "round-robin", "redundant", "ecf" or
            "blest" (mptcp_fast.engine.scheduler; docs/engine.md, "Schedulers").
        max_subflows: subflows per connection, the initial one included (1..256).
        join_announced: open subflows to the addresses the peer announces (ADD_ADDR).
        deny_join_initial: server: set flag C in the MP_CAPABLE SYN/ACK and accept no
            MP_JOIN to the initial address and port.
        max_add_addr_accepted: announced addresses joined per connection (0..255).
        subflow_addresses: client: open subflows from these of the endpoint's addresses
            (None: from every other address).
        signal_addresses: announce these addresses with ADD_ADDR once established.
        backup_addresses: subflows from these addresses are backups (MP_JOIN B flag): they
            carry data only when nothing else can.
        receive_window: the largest data-level receive window, in bytes (1 KiB..1 GiB);
            memory per connection is bounded by it.
        initial_receive_window: a connection's first window, grown towards
            ``receive_window`` as its application reads.
        send_buffer: the most ``Connection.send`` holds beyond what the peer acknowledged.
        mss: the MSS offered (536..65495): the MTU less 40 bytes.
        offload: send one segment per mapping chunk (up to 64 KiB), as to a NIC with TSO.
        delayed_ack: seconds before a lone segment is acknowledged.
        min_rto: the smallest retransmission timeout, in seconds.
        max_rto: the largest retransmission timeout, in seconds.
        syn_retries: SYN retransmissions before a connection attempt times out (0..20).
        stale_after: RTOs in a row before a subflow's data is reinjected on the others.
        max_retransmits: RTOs in a row before a subflow is given up.
        time_wait: seconds in TIME-WAIT (2 MSL).
        keepalive: idle seconds before a subflow is probed (None: no keepalives).
        keepalive_interval: seconds between keepalive probes.
        keepalive_probes: unanswered probes before the subflow is given up.
        max_connections: the size of the token table: connections per endpoint.
        syn_backlog: half-open handshakes kept per endpoint; beyond, SYN cookies.
        isn_secret: the RFC 6528 key of initial sequence numbers (random by default).
        fastopen: TCP Fast Open (RFC 7413, as RFC 8684 Appendix B and Linux do it with
            MPTCP v1; v0 connections never use it): a server hands out cookies and takes the
            data of a SYN with a valid one; a client asks servers for cookies and sends the
            first bytes of ``Endpoint.connect(..., data=...)`` in the SYN once it has one
            (docs/engine.md, "TCP Fast Open").
        fastopen_backlog: server: a SYN's data are taken only while at most this many
            handshakes (its own included) are half open (RFC 7413 §5.1; Linux: the
            listener's TCP_FASTOPEN queue, which counts TFO handshakes only).
        fastopen_key: server: the secret TFO cookies are made with (random by default): the
            same on every endpoint that serves one address (workers, restarts), so that the
            cookie one gave is good at the others (Linux: net.ipv4.tcp_fastopen_key).

    Raises:
        ValueError: a field out of its range or not one of its choices (the message names
            the field).
        TypeError: an address set given as one address.
    """

    # -- MPTCP (RFC 8684)
    profile: str = "v1"                # "v1" (RFC 8684), "v0" (RFC 6824), "v0+add_addr2" (v0 with
                                       # the HMAC'd ADD_ADDR2 of draft-ietf-mptcp-rfc6824bis-00)
    checksums: bool = False            # ask for DSS checksums (Linux: net.mptcp.checksum_enabled=0)
    congestion_control: str = "lia"    # "lia" (RFC 6356, coupled), "reno", "cubic"
    hystart: bool = True               # leave slow start when the queue grows (RFC 9406 §4.2,
                                       # as Linux's CUBIC; mptcp_fast.engine.cc)
    scheduler: str = "lowest-rtt"      # "lowest-rtt", "round-robin", "redundant", "ecf",
                                       # "blest"
    max_subflows: int = 8              # subflows per connection, the initial one included
    # -- the path manager (RFC 8684 §3.4; the model of Linux's in-kernel PM and `ip mptcp`).
    # Addresses are text or packed bytes of the endpoint's own addresses.
    join_announced: bool = True        # open subflows to addresses the peer announced (ADD_ADDR)
    deny_join_initial: bool = False    # server: flag C in the MP_CAPABLE SYN/ACK, and no MP_JOIN
                                       # to the initial address and port is accepted (RFC 8684
                                       # §3.1; Linux: allow_join_initial_addr_port=0)
    max_add_addr_accepted: int = 8     # announced addresses joined per connection (Linux: 0..8)
    subflow_addresses: frozenset | None = None   # client: open subflows from these ("subflow"
                                                 # endpoints); None: from every other address
    signal_addresses: frozenset = field(default_factory=frozenset)  # announce these with
                                                 # ADD_ADDR once established ("signal")
    backup_addresses: frozenset = field(default_factory=frozenset)  # subflows from these are
                                                 # backups (MP_JOIN B flag; "backup")
    # -- buffers (bytes); memory per connection is bounded by these
    receive_window: int = 4 << 20      # the largest data-level receive window (RFC 8684 §3.3.4)
    initial_receive_window: int = 512 << 10   # a connection's first window, grown towards
                                       # receive_window as its application reads (Linux:
                                       # tcp_rmem[1], then dynamic right-sizing)
    send_buffer: int = 4 << 20         # the most send() holds beyond what the peer acknowledged
                                       # (twice the peer's largest window, at least 64 KiB, up to
                                       # this: Linux sizes sndbuf from the path the same way)
    # -- TCP (RFC 9293)
    mss: int = 1460                    # offered MSS (RFC 9293 §3.7.1): the MTU less 40 bytes
                                       # (IPv4; IPv6 subflows offer 20 less)
    offload: bool = False              # send one segment per mapping chunk (up to 64 KiB), as
                                       # to a NIC with TSO; segments of any size are received
    delayed_ack: float = 0.040         # Linux's TCP_DELACK_MIN
    min_rto: float = 0.2               # Linux's TCP_RTO_MIN (RFC 6298 §2.4)
    max_rto: float = 120.0             # Linux's TCP_RTO_MAX
    syn_retries: int = 6               # Linux's tcp_syn_retries
    stale_after: int = 2               # RTOs in a row before a subflow's data is reinjected
    max_retransmits: int = 15          # RTOs in a row before a subflow is given up (tcp_retries2)
    time_wait: float = 60.0            # Linux's TCP_TIMEWAIT_LEN (2 MSL)
    keepalive: float | None = None     # idle seconds before probing a subflow (off, as Linux
    keepalive_interval: float = 75.0   # without SO_KEEPALIVE; tcp_keepalive_time is 7200),
    keepalive_probes: int = 9          # then every interval, given up after this many
    # -- endpoint
    max_connections: int = 65536       # the token table's size
    syn_backlog: int = 256             # half-open handshakes kept; beyond, SYN cookies
                                       # (Linux: tcp_max_syn_backlog, tcp_syncookies=1)
    isn_secret: bytes | None = None    # RFC 6528 key; random by default
    # -- TCP Fast Open (RFC 7413; RFC 8684 Appendix B; engine/fastopen.py)
    fastopen: bool = False             # both sides: cookies, data in the SYN (Linux:
                                       # net.ipv4.tcp_fastopen=3 and TCP_FASTOPEN)
    fastopen_backlog: int = 256        # server: SYN data taken while at most this many
                                       # handshakes are half open
    fastopen_key: bytes | None = None  # server: the cookies' secret (16+ bytes); random by
                                       # default (Linux: net.ipv4.tcp_fastopen_key)

    @property
    def version(self) -> int:
        """The MPTCP version the profile speaks: 1, or 0 for RFC 6824."""
        return 1 if self.profile == "v1" else 0

    @property
    def add_addr2(self) -> bool:
        """Whether ADD_ADDR is sent and read as the HMAC-protected ADD_ADDR2."""
        return self.profile == "v0+add_addr2"

    def __post_init__(self):
        if self.profile not in PROFILES:
            raise ValueError(f"profile must be one of {PROFILES}, got {self.profile!r}")
        if self.congestion_control not in CONTROLLERS:
            raise ValueError(f"congestion_control must be one of {sorted(CONTROLLERS)}, "
                             f"got {self.congestion_control!r}")
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {sorted(SCHEDULERS)}, got {self.scheduler!r}")
        checks = (("max_subflows", 1, 256), ("receive_window", 1024, 1 << 30),
                  ("initial_receive_window", 1024, 1 << 30),
                  ("send_buffer", 1024, 1 << 34), ("mss", 536, 65495), ("syn_retries", 0, 20),
                  ("stale_after", 1, 100), ("max_retransmits", 1, 100),
                  ("max_connections", 1, 1 << 24), ("keepalive_probes", 1, 100),
                  ("syn_backlog", 0, 1 << 20), ("fastopen_backlog", 0, 1 << 20))
        for name, low, high in checks:
            value = getattr(self, name)
            if type(value) is not int or not low <= value <= high:
                raise ValueError(f"{name} must be an int in {low}..{high}, got {value!r}")
        if self.keepalive is not None and (not isinstance(self.keepalive, (int, float))
                                           or isinstance(self.keepalive, bool)
                                           or self.keepalive <= 0):
            raise ValueError(f"keepalive must be None or seconds > 0, got {self.keepalive!r}")
        for name in ("delayed_ack", "min_rto", "max_rto", "time_wait", "keepalive_interval"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a number of seconds >= 0, got {value!r}")
        if self.fastopen_key is not None and (not isinstance(self.fastopen_key, bytes)
                                              or len(self.fastopen_key) < 16):
            raise ValueError("fastopen_key must be None or bytes of at least 16")
        if not 0 < self.min_rto <= self.max_rto:
            raise ValueError("need 0 < min_rto <= max_rto")
        if type(self.max_add_addr_accepted) is not int or not 0 <= self.max_add_addr_accepted <= 255:
            raise ValueError("max_add_addr_accepted must be an int in 0..255")
        for name in ("subflow_addresses", "signal_addresses", "backup_addresses"):
            value = getattr(self, name)
            if value is not None:
                if isinstance(value, (str, bytes)):
                    raise TypeError(f"{name} must be a set of addresses, not one address")
                object.__setattr__(self, name, frozenset(_check.address(name, a) for a in value))
