"""``proxy --engine userspace --direction mptcp-to-tcp --workers N --worker-address ADDR ...``
(and ``serve --workers N --worker-address ADDR ... --public ADDR``): the userspace engine in N
processes (one core each) behind one public address.

One engine cannot hand a connection to another, and the kernel cannot route a subflow to the
right one by its token as it does for its own sockets (SO_REUSEPORT, workers.py): it sees
only addresses and ports. So each worker gets addresses of its own, and MPTCP itself keeps
every subflow of a connection on the worker that took it, as RFC 8684 meant for servers
behind a stateless L4 balancer:

* The balancer spreads the *initial* subflows (the MP_CAPABLE SYNs to the public address) over
  the workers by the 4-tuple. Here it is an nftables DNAT map (``ruleset``): it rewrites the
  destination of a SYN to the public address into one worker's *balanced address*; conntrack
  keeps the rest of that subflow on the same worker and gives its replies the public address
  as their source again, so the client only ever sees the public address.
* The worker answers with flag C in its MP_CAPABLE SYN/ACK (RFC 8684 §3.1, "do not join my
  initial address and port": a join there would be balanced anywhere) and, once the
  connection is established, announces its *own address* with ADD_ADDR (RFC 8684 §3.4.1).
  The client joins that address, which routes only to this worker: every MP_JOIN lands where
  its token is known. (MP_CAPABLE keys and MP_JOIN HMACs cover no address, so the DNAT
  breaks neither; the ADD_ADDR HMAC covers the announced address, which no one rewrites.)

Why two addresses per worker, not one: the engine sees the initial subflow on the address the
balancer rewrote it to, calls it address id 0 (RFC 8684 §3.2) and, with flag C sent, refuses
joins to it. The announced address must be another one, with an id of its own. The balanced
address is the worker's own address plus one, in the same /24 (/64) that the worker's TUN
device routes to it (the kernel's side of the device is ``net._kernel_side``'s .1).

Behind another L4 balancer (IPVS in NAT mode, a cloud NLB, another machine's nftables), the
same worker runs with ``--balancer none``: the balancer sends each machine's share of SYNs to
that machine's balanced address, and installs nothing here (docs/proxy.md).

The RFC 8803 Convert server half (``--convert``) runs in the same workers, each reading the
Convert messages of the connections it took. With ``--fastopen`` a client's next SYN, its
Connect TLV inside, may be balanced to another worker than the one that gave its cookie: the
supervisor draws one cookie key for all the workers (``--fastopen-key`` gives it, for machines
behind one balancer), and ``BalancedCookies`` lets a cookie at the balanced address cover the
client's address alone, so that every worker with the key takes it (RFC 7413 §4.1.2).

The table is this command's own (``inet mptcp_fast_<supervisor pid>``), installed once every
worker listens and deleted when the command ends, however it ends but SIGKILL; a table whose
process is gone (a SIGKILL) is deleted by the next run in that namespace.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import subprocess
from dataclasses import dataclass

from ..engine.cookies import FastOpenCookies
from ..errors import MptcpError

__all__ = ["WorkerPlan", "plan_workers", "ruleset", "Balancer", "check_arguments",
           "apply_plan", "public_address", "TABLE_PREFIX", "BalancedCookies",
           "fastopen_key", "FASTOPEN_KEY_SIZES"]

TABLE_PREFIX = "mptcp_fast_"     # nftables table names: this prefix and the supervisor's pid


@dataclass(frozen=True)
class WorkerPlan:
    """The addresses of one worker."""

    number: int          # 0 .. N - 1, the "worker" of its records
    own: str             # announced with ADD_ADDR: where this worker's joins arrive
    balanced: str        # where the balancer rewrites the initial SYNs given to this worker
    kernel_side: str     # the kernel's address on the worker's TUN device (CIDR)


def plan_workers(addresses: list[str], workers: int) -> list[WorkerPlan]:
    """One ``WorkerPlan`` per ``--worker-address``; an MptcpError that names the address for
    anything that would not route (wrong count, mixed families, two in one prefix, no room
    for the balanced address)."""
    if len(addresses) != workers:
        raise MptcpError(f"--workers {workers} needs one --worker-address per worker, got "
                         f"{len(addresses)}")
    from .net import _kernel_side
    plans: list[WorkerPlan] = []
    prefixes: dict[ipaddress.IPv4Network | ipaddress.IPv6Network, str] = {}
    for number, text in enumerate(addresses):
        try:
            own = ipaddress.ip_address(text)
        except ValueError:
            raise MptcpError(f"--worker-address {text!r} is not an IP address") from None
        prefix = ipaddress.ip_network(f"{own}/{24 if own.version == 4 else 64}", strict=False)
        if prefix in prefixes:
            raise MptcpError(f"--worker-address {text} and {prefixes[prefix]} share {prefix}: "
                             "each worker's TUN device routes a prefix of its own")
        prefixes[prefix] = text
        kernel_side = _kernel_side(str(own))
        balanced = own + 1
        taken = ipaddress.ip_interface(kernel_side).ip
        if balanced not in prefix or balanced == taken or (
                own.version == 4 and balanced == prefix.broadcast_address):
            raise MptcpError(f"--worker-address {text}: its balanced address (the next one, "
                             f"{balanced}) must be a free address of {prefix}; take a lower "
                             "one")
        plans.append(WorkerPlan(number, str(own), str(balanced), kernel_side))
    if len({ipaddress.ip_address(p.own).version for p in plans}) > 1:
        raise MptcpError("--worker-address: the workers' addresses are of one family")
    return plans


def public_address(args) -> tuple[str, int]:
    """(host, port) the clients connect to: ``proxy --listen HOST:PORT``, ``serve --public
    HOST --port PORT`` (host "" when not given)."""
    if args.command == "serve":
        return args.public or "", args.port
    host, _, port = args.listen.rpartition(":")
    return host.strip("[]"), int(port)


def check_arguments(args) -> None:
    """Refuse, with what to do instead, what ``--worker-address`` / ``--workers`` on the
    userspace engine cannot do (before anything is opened)."""
    where = "--workers on the userspace engine" if args.workers > 1 else "--worker-address"
    if args.command == "proxy":
        _check_proxy(args, where)
    if not args.worker_address:
        raise MptcpError(f"{where} needs --worker-address ADDR, once per worker: each worker's "
                         "own address, announced to its clients (ADD_ADDR) for their joins")
    if args.address or args.tun_address or args.route:
        raise MptcpError("--worker-address makes each worker's addresses and routes: no "
                         "--address, --tun-address or --route")
    if args.workers > 1 and (args.persist_tun or "%" not in args.tun):
        raise MptcpError("each worker makes a TUN device of its own: --tun takes a template "
                         "with %d (default mft%d), and no --persist-tun")
    plans = plan_workers(args.worker_address, args.workers)
    if args.balancer == "nftables":
        host = public_address(args)[0]
        option = "--public ADDRESS" if args.command == "serve" else \
            "--listen ADDRESS:PORT (not every address)"
        try:
            public = ipaddress.ip_address(host)
        except ValueError:
            public = None
        if public is None or public.is_unspecified:
            raise MptcpError("--balancer nftables spreads the connections to one public "
                             f"address: {option}")
        if public.version != ipaddress.ip_address(plans[0].own).version:
            raise MptcpError(f"the public address {host} and --worker-address are of two "
                             "families")
        for plan in plans:
            # the public address as a worker's own would have that worker's joins balanced
            # (a join is a SYN too), as its balanced one would be announced nowhere; anywhere
            # in its prefix, what no mapping takes (a stray segment, a ping) would be routed
            # into that worker's device instead of going nowhere
            prefix = ipaddress.ip_interface(plan.kernel_side).network
            if public in prefix:
                raise MptcpError(f"the public address {host} is in worker {plan.number}'s "
                                 f"prefix {prefix}: give the workers addresses elsewhere")


def _check_proxy(args, where: str) -> None:
    """What only the proxy's workers refuse."""
    if args.direction != "mptcp-to-tcp" or args.front != "tcp":
        raise MptcpError(f"{where} is the MPTCP-facing server side (--direction mptcp-to-tcp, "
                         "the plain proxy or the --convert server half): its workers take "
                         "MPTCP connections behind one public address; a client side of N "
                         "processes needs no balancer, run N proxies")
    if args.convert:
        # the RFC 8803 server half: each worker reads the Convert message of the connections
        # it took and connects where it says, as one process does (convert_aio.py)
        if args.to is not None:
            raise MptcpError("with --convert the server half connects where each Connect TLV "
                             "says: no --to")
        if args.max_conversations < 1:
            raise MptcpError("--max-conversations must be at least 1")
    elif args.to is None:
        raise MptcpError("proxy needs --to HOST:PORT (or --convert on the server half): "
                         "where the workers carry each connection")
    if args.fastopen and not args.convert:
        raise MptcpError("--fastopen is the Convert halves' (--convert): their Convert "
                         "message rides in the SYN")


def apply_plan(args, plan: WorkerPlan) -> None:
    """In worker ``plan.number``: its engine's addresses (the balanced one first: the initial
    subflows arrive there), its device's, and what the engine is told: flag C, and announce
    the own address (read by net._Engine)."""
    args.address = [plan.balanced, plan.own]
    args.tun_address = [plan.kernel_side]
    args.deny_join_initial = True
    args.signal = [plan.own]
    args.worker_plan = plan


# ====================================================================== TCP Fast Open
FASTOPEN_KEY_SIZES = (16, 32)       # bytes: one HMAC-SHA256 key (engine/cookies.py), also
                                    # at 32, where the kernel's sysctl takes a key pair


def fastopen_key(text: str) -> bytes:
    """``--fastopen-key``: HEX (16 or 32 bytes; ``-`` and ``,`` between groups are allowed, as
    net.ipv4.tcp_fastopen_key prints them) or ``@FILE`` holding it (so that the key is not in
    the process list). The messages never show the key, even a wrong one."""
    source = "--fastopen-key"
    if text.startswith("@"):
        source = f"--fastopen-key {text}"
        try:
            with open(text[1:]) as f:
                text = f.read()
        except OSError as exc:
            raise MptcpError(f"{source}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise MptcpError(f"{source}: not hex text") from None
    digits = re.sub(r"[\s,-]", "", text)
    try:
        key = bytes.fromhex(digits)
    except ValueError:
        raise MptcpError(f"{source}: not hex (16 or 32 bytes as 32 or 64 hex digits)") from None
    if len(key) not in FASTOPEN_KEY_SIZES:
        raise MptcpError(f"{source}: {len(key)} bytes; a key is 16 or 32 bytes (32 or 64 hex "
                         "digits)")
    return key


class BalancedCookies(FastOpenCookies):
    """A worker's TCP Fast Open cookies, good at every worker (and machine) that shares its
    key (RFC 7413 §4.1.2: the cookie authenticates the client's address; what else it
    covers is the server's choice). The engine's cookie covers the server's address too, and
    a worker sees the initial SYNs at its *balanced* address, which the balancer chose: a
    client's next SYN, DNATed to another worker's balanced address, would carry a cookie made
    for an address that is not that worker's, and be refused. So for the balanced address
    the cookie covers the client's address alone (its MAC input has an empty server part);
    a SYN to any other address of the worker is handled as the engine's own cookies are."""

    def __init__(self, secret: bytes, balanced: str):
        super().__init__(secret)
        self._balanced = ipaddress.ip_address(balanced).packed

    def _server(self, server: bytes) -> bytes:
        return b"" if bytes(server) == self._balanced else server

    def make(self, client: bytes, server: bytes, now: float) -> bytes:
        return super().make(client, self._server(server), now)

    def check(self, client: bytes, server: bytes, cookie: bytes, now: float) -> str | None:
        return super().check(client, self._server(server), cookie, now)


# ====================================================================== nftables
SPREADS = ("hash", "round-robin")


def ruleset(table: str, public: str, port: int, targets: list[str],
            spread: str = "hash") -> str:
    """The nftables table that spreads the SYNs to ``public``:``port`` over ``targets`` (the
    workers' balanced addresses): by a hash of the 4-tuple (``spread="hash"``: stateless, the
    same worker for the same 4-tuple, as a router's ECMP), or in turn (``"round-robin"``:
    even shares however few the connections).

    Only a SYN without ACK opens a mapping: a later packet of a subflow follows its conntrack
    entry (NAT is decided once per connection, on its first packet, and replies are
    un-DNATed to come from ``public``); a packet to the public address that is not a SYN and
    no connection's (conntrack's loose pick-up of a mid-stream packet) goes nowhere. Two
    hooks: prerouting for clients elsewhere, output for clients on this host."""
    family = "ip" if ipaddress.ip_address(public).version == 4 else "ip6"
    if spread not in SPREADS:
        raise ValueError(f"spread must be one of {SPREADS}, got {spread!r}")
    entries = ", ".join(f"{i} : {address}" for i, address in enumerate(targets))
    pick = f"jhash {family} saddr . tcp sport . {family} daddr . tcp dport" \
        if spread == "hash" else "numgen inc"
    rule = (f"{family} daddr {public} tcp dport {port} "
            f"tcp flags & (fin | syn | rst | ack) == syn "
            f"dnat {family} to {pick} mod {len(targets)} map {{ {entries} }}")
    chains = []
    for hook in ("prerouting", "output"):       # -100: NF_IP_PRI_NAT_DST, "dstnat" (which
        chains.append(f"\tchain {hook} {{\n"    # nft 1.0.6 takes by name in prerouting only)
                      f"\t\ttype nat hook {hook} priority -100; policy accept;\n"
                      f"\t\t{rule}\n"
                      f"\t}}\n")
    return (f"# mptcp-fast: MPTCP connections to {public}:{port} over {len(targets)} "
            f"worker(s), RFC 8684 §3.1\n"
            f"table inet {table} {{\n" + "".join(chains) + "}\n")


def _nft(arguments: list[str], netns: str | None, script: str | None = None) -> str:
    command = ["nft", *arguments]
    if netns is not None:
        command = ["ip", "netns", "exec", netns, *command]
    try:
        done = subprocess.run(command, input=script, capture_output=True, text=True,
                              timeout=30)
    except FileNotFoundError:
        raise MptcpError("--balancer nftables needs nft (the nftables package), or run with "
                         "--balancer none behind a balancer of your own") from None
    if done.returncode != 0:
        raise MptcpError(f"nft {' '.join(arguments)}: {done.stderr.strip()}")
    return done.stdout


class Balancer:
    """The nftables table of one run: ``install`` once every worker listens, ``remove`` when
    the command ends (idempotent)."""

    def __init__(self, args, plans: list[WorkerPlan]):
        self.public, port = public_address(args)
        self.netns = args.netns
        self.table = f"{TABLE_PREFIX}{os.getpid()}"
        self.script = ruleset(self.table, self.public, port,
                              [plan.balanced for plan in plans], args.spread)
        self.spread = args.spread
        self.installed = False

    def install(self) -> dict:
        """Put the table in place (first deleting tables left by runs that are gone); what
        the listening record says of it."""
        self._delete_orphans()
        _nft(["-f", "-"], self.netns, self.script)
        self.installed = True
        return {"balancer": "nftables", "table": f"inet {self.table}", "public": self.public,
                "spread": self.spread}

    def remove(self) -> None:
        if self.installed:
            self.installed = False
            with contextlib.suppress(MptcpError):
                _nft(["delete", "table", "inet", self.table], self.netns)

    def _delete_orphans(self) -> None:
        """Tables of ours whose process is gone (it was SIGKILLed and could not delete it)."""
        listed = _nft(["list", "tables", "inet"], self.netns)
        for pid in re.findall(rf"^table inet {TABLE_PREFIX}(\d+)$", listed, re.MULTILINE):
            if not _alive(int(pid)):
                with contextlib.suppress(MptcpError):
                    _nft(["delete", "table", "inet", f"{TABLE_PREFIX}{pid}"], self.netns)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
