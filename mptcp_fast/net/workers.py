"""The userspace engine in N processes (one core each) behind one public address.

One engine cannot hand a connection to another, and the kernel cannot route a subflow to the
right one by its token as it does for its own sockets (SO_REUSEPORT): it sees only addresses
and ports. So each worker gets addresses of its own, and MPTCP itself keeps every subflow of
a connection on the worker that took it, as RFC 8684 meant for servers behind a stateless L4
balancer:

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
device routes to it (the kernel's side of the device is ``kernel_side``'s .1).

``serve_workers`` is the whole of it for an asyncio handler; ``run_balanced`` (the plans, the
balancer and the supervisor) and ``supervise`` (the fork supervisor alone) are what it is
made of, for a caller with workers of its own (the ``mptcp-fast`` command's).

The table is the supervisor's own (``inet mptcp_fast_<supervisor pid>``), installed once every
worker listens and deleted when the supervisor ends, however it ends but SIGKILL; a table
whose process is gone (a SIGKILL) is deleted by the next run in that namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import os
import re
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

from ..engine import Config
from ..engine.cookies import FastOpenCookies
from ..errors import MptcpError

__all__ = ["serve_workers", "run_balanced", "supervise", "WorkerPlan", "plan_workers",
           "check_public", "kernel_side", "worker_config", "balanced_cookies", "ruleset",
           "Balancer", "BalancedCookies",
           "TABLE_PREFIX", "SPREADS", "BALANCERS"]

TABLE_PREFIX = "mptcp_fast_"     # nftables table names: this prefix and the supervisor's pid
SPREADS = ("hash", "round-robin")
BALANCERS = ("nftables", "none")
READY = b"mptcp-fast worker listening"      # what serve_workers' workers print when they do
STOP_WAIT = 5.0               # seconds the workers have to end after SIGINT, then SIGKILL
PR_SET_PDEATHSIG = 1          # prctl(2): the signal a process gets when its parent dies


# ====================================================================== the API
def serve_workers(handler: Callable[..., Awaitable[None]], *, public: tuple[str, int],
                  worker_addresses: list[str], config: Config | None = None,
                  balancer: str = "nftables", spread: str = "hash",
                  netns: str | None = None, tun: str = "mft%d",
                  on_ready: Callable[[], None] | None = None) -> int:
    """Serve MPTCP connections to ``public`` (host, port) with ``handler(reader, writer)`` (a
    coroutine function, as for ``aio.Stack.start_server``) in one process per
    ``worker_addresses`` entry, each with its own engine and TUN device (``tun``, a name
    template with ``%d`` when there are two workers or more; made in ``netns`` when given).

    Worker *i* owns ``worker_addresses[i]`` and the next address (its *balanced* address); the
    kernel side of its device takes .1 of their /24 (::1 of their /64). With ``balancer``
    "nftables" an nftables table in ``netns`` (or here) spreads the SYNs to the public
    address over the workers (``spread``: "hash" of the 4-tuple, or "round-robin"); with
    "none" a balancer of your own sends each worker's share to its balanced address. Every
    worker's engine sends flag C and announces its own address (``config`` is given both
    settings), so that every join of a connection lands at the worker that owns it.

    Blocks until SIGINT or SIGTERM reaches this process or a worker fails: ``on_ready()``
    runs here once every worker listens (and the table is in place); the table is removed
    before it returns. What the workers print goes to this process's stdout. Returns the exit
    status: 0 when all ended cleanly, 130 on SIGINT, 143 on SIGTERM, a failed worker's status
    otherwise.
    Call it from a process without threads (it forks), outside any event loop.

    Raises:
        MptcpError: an argument that cannot work (a bad or shared worker prefix, a public
            address that is not one address of the workers' family, a bad port, no ``%d``
            in ``tun``), or nft failing.
    """
    host, port = public
    if not isinstance(port, int) or not 0 < port < 65536:
        raise MptcpError(f"the public port must be an int in 1..65535, got {port!r}")
    if isinstance(worker_addresses, str):
        raise MptcpError("worker_addresses is a list of addresses, one per worker, not "
                         f"{worker_addresses!r}")
    plans = plan_workers(worker_addresses)
    if balancer not in BALANCERS:
        raise MptcpError(f"balancer must be one of {BALANCERS}, got {balancer!r}")
    if spread not in SPREADS:
        raise MptcpError(f"spread must be one of {SPREADS}, got {spread!r}")
    if len(plans) > 1 and "%" not in tun:
        raise MptcpError("each worker makes a TUN device of its own: tun takes a template "
                         "with %d")
    if balancer == "nftables":
        check_public(host, plans)
    config = config or Config()
    if config.fastopen and config.fastopen_key is None:
        # one TFO key for every worker, drawn before they fork (BalancedCookies)
        config = dataclasses.replace(config, fastopen_key=os.urandom(16))

    def work(plan: WorkerPlan) -> int:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve_one(handler, plan, port, config, tun, netns))
        return 0

    def ready(line: bytes, balancing: dict) -> None:
        if on_ready is not None:
            on_ready()
    try:
        return run_balanced(work, plans, public=(host, port), balancer=balancer,
                            spread=spread, netns=netns, is_listening=lambda line: line == READY,
                            ready=ready)
    except KeyboardInterrupt:               # Ctrl-C, or SIGINT: the workers ended (supervise)
        return 130


async def _serve_one(handler, plan: WorkerPlan, port: int, config: Config, tun: str,
                     netns: str | None) -> None:
    """One worker of ``serve_workers``: its device, its engine, the handler, until SIGINT."""
    from .aio import Stack
    from .tun import TunDevice
    device = TunDevice(tun, offload=config.offload, netns=netns)
    stack = None
    try:
        device.configure([plan.kernel_side], netns=netns)
        device.check_routed([plan.balanced, plan.own], netns=netns)
        stack = Stack([plan.balanced, plan.own], device, worker_config(config, plan))
        balanced_cookies(stack, plan)
        server = await stack.start_server(handler, port)
        print(READY.decode(), flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            # SIGINT (asyncio.run cancels this task): the connections' handlers end before
            # the stack does, cancelled, rather than fail on a stack closed under them
            server.close()
            handlers = [task for task in asyncio.all_tasks()
                        if task is not asyncio.current_task()]
            for task in handlers:
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)
    finally:
        if stack is not None:
            stack.close()
        device.close()


def worker_config(config: Config, plan: WorkerPlan) -> Config:
    """``config`` for worker ``plan``: flag C in its MP_CAPABLE SYN/ACKs (RFC 8684 §3.1) and
    its own address announced (RFC 8684 §3.4.1)."""
    return dataclasses.replace(config, deny_join_initial=True,
                               signal_addresses=frozenset({plan.own}))


def balanced_cookies(stack, plan: WorkerPlan) -> None:
    """With TCP Fast Open and a shared key, the stack's cookies are good at every worker."""
    config = stack.endpoint.config
    if config.fastopen and config.fastopen_key is not None:
        stack.endpoint.fastopen.cookies = BalancedCookies(config.fastopen_key, plan.balanced)


def run_balanced(work: Callable[[WorkerPlan], int], plans: list[WorkerPlan], *,
                 public: tuple[str, int], balancer: str = "nftables", spread: str = "hash",
                 netns: str | None = None, is_listening: Callable[[bytes], bool],
                 ready: Callable[[bytes, dict], None] | None = None,
                 relay: Callable[[bytes], bool] | None = None,
                 label: str = "mptcp-fast") -> int:
    """``work(plan)`` in one process per plan (``supervise``), the nftables table (with
    ``balancer`` "nftables") installed once every worker listens and removed when they end;
    ``ready(line, balancing)`` then gets the last listening line and what the table is
    (empty with no balancer)."""
    table = Balancer(public, plans, netns=netns, spread=spread) \
        if balancer == "nftables" else None

    def all_listening(line: bytes) -> None:
        balancing = table.install() if table is not None else {}
        if ready is not None:
            ready(line, balancing)
    try:
        return supervise(len(plans), lambda number: work(plans[number]),
                         is_listening=is_listening, ready=all_listening, relay=relay,
                         label=label)
    finally:
        if table is not None:
            table.remove()


# ====================================================================== the plans
@dataclass(frozen=True)
class WorkerPlan:
    """The addresses of one worker."""

    number: int          # 0 .. N - 1, the "worker" of its records
    own: str             # announced with ADD_ADDR: where this worker's joins arrive
    balanced: str        # where the balancer rewrites the initial SYNs given to this worker
    kernel_side: str     # the kernel's address on the worker's TUN device (CIDR)


def kernel_side(address: str) -> str:
    """The kernel's address on the TUN device for one of the engine's: .1 of its /24 (or
    ::1 of its /64), unless the engine's is that one, then .254 / ::fffe."""
    ip = ipaddress.ip_address(address)
    prefix = 24 if ip.version == 4 else 64
    net = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
    first = net.network_address + 1
    other = first if first != ip else net.broadcast_address - 1
    return f"{other}/{prefix}"


def plan_workers(addresses: list[str], name: str = "worker address") -> list[WorkerPlan]:
    """One ``WorkerPlan`` per address; an MptcpError that names the address (as ``name``
    says, e.g. the option that gave it) for anything that would not route (mixed families,
    two in one prefix, no room for the balanced address)."""
    if not addresses:
        raise MptcpError(f"no {name}: each worker needs its own address")
    plans: list[WorkerPlan] = []
    prefixes: dict[ipaddress.IPv4Network | ipaddress.IPv6Network, str] = {}
    for number, text in enumerate(addresses):
        try:
            own = ipaddress.ip_address(text)
        except ValueError:
            raise MptcpError(f"{name} {text!r} is not an IP address") from None
        prefix = ipaddress.ip_network(f"{own}/{24 if own.version == 4 else 64}", strict=False)
        if prefix in prefixes:
            raise MptcpError(f"{name} {text} and {prefixes[prefix]} share {prefix}: "
                             "each worker's TUN device routes a prefix of its own")
        prefixes[prefix] = text
        side = kernel_side(str(own))
        balanced = own + 1
        taken = ipaddress.ip_interface(side).ip
        if balanced not in prefix or balanced == taken or (
                own.version == 4 and balanced == prefix.broadcast_address):
            raise MptcpError(f"{name} {text}: its balanced address (the next one, "
                             f"{balanced}) must be a free address of {prefix}; take a lower "
                             "one")
        plans.append(WorkerPlan(number, str(own), str(balanced), side))
    if len({ipaddress.ip_address(p.own).version for p in plans}) > 1:
        raise MptcpError(f"{name}: the workers' addresses are of one family")
    return plans


def check_public(host: str, plans: list[WorkerPlan], *, option: str = "public=(ADDRESS, PORT)",
                 balancer: str = "the nftables balancer",
                 addresses: str = "the workers' addresses") -> None:
    """The public address the nftables balancer spreads: one address (not every address),
    of the workers' family, in none of their prefixes. The messages call the balancer, the
    workers' addresses and the way to give the public address as the caller says."""
    try:
        public = ipaddress.ip_address(host)
    except ValueError:
        public = None
    if public is None or public.is_unspecified:
        raise MptcpError(f"{balancer} spreads the connections to one public address: "
                         f"{option}")
    if public.version != ipaddress.ip_address(plans[0].own).version:
        raise MptcpError(f"the public address {host} and {addresses} are of two families")
    for plan in plans:
        # the public address as a worker's own would have that worker's joins balanced
        # (a join is a SYN too), as its balanced one would be announced nowhere; anywhere
        # in its prefix, what no mapping takes (a stray segment, a ping) would be routed
        # into that worker's device instead of going nowhere
        prefix = ipaddress.ip_interface(plan.kernel_side).network
        if public in prefix:
            raise MptcpError(f"the public address {host} is in worker {plan.number}'s "
                             f"prefix {prefix}: give the workers addresses elsewhere")


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
        raise MptcpError("the nftables balancer needs nft (the nftables package); behind a "
                         "balancer of your own, use none") from None
    if done.returncode != 0:
        raise MptcpError(f"nft {' '.join(arguments)}: {done.stderr.strip()}")
    return done.stdout


class Balancer:
    """The nftables table of one run: ``install`` once every worker listens, ``remove`` when
    the workers end (idempotent)."""

    def __init__(self, public: tuple[str, int], plans: list[WorkerPlan], *,
                 netns: str | None = None, spread: str = "hash"):
        self.public, port = public
        self.netns = netns
        self.table = f"{TABLE_PREFIX}{os.getpid()}"
        self.script = ruleset(self.table, self.public, port,
                              [plan.balanced for plan in plans], spread)
        self.spread = spread
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


# ====================================================================== the supervisor
class _Terminated(Exception):
    """SIGTERM reached the supervisor."""


def _on_sigterm(signum, frame) -> None:
    raise _Terminated


def supervise(count: int, run: Callable[[int], int], *, is_listening: Callable[[bytes], bool],
              ready: Callable[[bytes], None] | None = None,
              relay: Callable[[bytes], bool] | None = None, label: str = "mptcp-fast") -> int:
    """``run(number)`` in ``count`` forked processes (number 0 to count - 1, its stdout a pipe
    to this one); returns the exit status: 0 when all ended cleanly, 143 on SIGTERM, or the
    status of the first worker that failed (the rest are then ended).

    This process reads the workers' lines: ``is_listening(line)`` tells each worker's
    listening line, and ``ready(line)`` runs once every worker printed its own (with the last
    one); every other line goes to ``relay(line)`` (default: this process's stdout), which
    returns True to end the workers (with status 0). The workers end with SIGINT (then
    SIGKILL after a few seconds) on Ctrl-C, SIGTERM, a worker's failure or ``relay``'s word;
    what they print as they end is relayed too. A worker whose supervisor dies anyhow gets
    SIGTERM from the kernel (PR_SET_PDEATHSIG): no worker outlives it holding its
    addresses. A worker's exception is one line on stderr, ``label: worker N: ...``."""
    relay = relay or _print_line
    workers: dict[int, tuple[int, int]] = {}     # pid -> (worker number, its stdout pipe)
    partial: dict[int, bytes] = {}               # pipe -> the start of a line not yet ended
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        for number in range(count):
            read_end, write_end = os.pipe()
            pid = os.fork()
            if pid == 0:                          # the worker
                for _, other in workers.values():  # (the earlier workers' pipes are not its)
                    os.close(other)
                os.close(read_end)
                _run_worker(run, number, write_end, label)   # (never returns)
            os.close(write_end)
            workers[pid] = (number, read_end)
        return _supervise(count, workers, partial, is_listening, ready, relay)
    except _Terminated:
        return 143
    finally:
        _end(workers, partial, is_listening, relay)
        signal.signal(signal.SIGTERM, previous)


def _print_line(line: bytes) -> bool:
    sys.stdout.buffer.write(line + b"\n")
    sys.stdout.flush()
    return False


def _run_worker(run: Callable[[int], int], number: int, stdout: int, label: str) -> None:
    """In the forked child: print to the pipe, run, and leave with run's status (os._exit:
    the supervisor's stack and atexit handlers are not the child's to run)."""
    status = 2
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _die_with_parent()
        os.dup2(stdout, 1)
        os.close(stdout)
        sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
        status = run(number)
    except KeyboardInterrupt:
        status = 130
    except BaseException as exc:              # a worker's failure is one line
        with contextlib.suppress(Exception):
            print(f"{label}: worker {number}: {exc}", file=sys.stderr)
        status = 2
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(status)


def _die_with_parent() -> None:
    """SIGTERM to this worker when the supervisor ends (Linux's prctl; elsewhere nothing)."""
    import ctypes
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() == 1:                     # the supervisor died before prctl took
        os._exit(143)


def _supervise(count: int, workers: dict[int, tuple[int, int]], partial: dict[int, bytes],
               is_listening: Callable[[bytes], bool], ready: Callable[[bytes], None] | None,
               relay: Callable[[bytes], bool]) -> int:
    """Relay the workers' lines; the status once they are done or told to end."""
    pipes = {fd: number for number, fd in workers.values()}
    partial.update({fd: b"" for fd in pipes})
    listening: set[int] = set()
    poller = select.poll()
    for fd in pipes:
        poller.register(fd, select.POLLIN)
    while pipes:
        for fd, _ in poller.poll(500):
            data = os.read(fd, 1 << 16)
            if not data:                          # the worker is gone
                poller.unregister(fd)
                os.close(fd)
                del pipes[fd]
                del partial[fd]
                status = _reap(workers, fd)
                if status:                        # a worker failed: the rest end too
                    return status
                continue
            *lines, partial[fd] = (partial[fd] + data).split(b"\n")
            stop = False
            for line in lines:
                if is_listening(line):
                    listening.add(pipes[fd])
                    if len(listening) == count and ready is not None:
                        ready(line)
                    continue
                stop = relay(line) or stop
            if stop:
                return 0
    return 0


def _reap(workers: dict[int, tuple[int, int]], fd: int) -> int:
    """Wait for the worker whose pipe closed; its exit status (0: it ended cleanly; killed by
    a signal: 128 + the signal, as a shell says)."""
    for pid, (_, pipe) in list(workers.items()):
        if pipe == fd:
            _, status = os.waitpid(pid, 0)
            del workers[pid]
            code = os.waitstatus_to_exitcode(status)
            return code if code >= 0 else 128 - code
    return 0


def _relay_until_closed(pipes: list[int], partial: dict[int, bytes], end: float,
                        is_listening: Callable[[bytes], bool],
                        relay: Callable[[bytes], bool]) -> None:
    """Relay the whole lines the workers write until each closes its end (it exited) or
    ``end``; what it had begun before (``partial``) comes first. A listening line not read
    yet (the others failed first) is not relayed: they do not all listen."""
    poller = select.poll()
    for fd in pipes:
        poller.register(fd, select.POLLIN)
    open_pipes = set(pipes)
    while open_pipes and (left := end - time.monotonic()) > 0:
        for fd, _ in poller.poll(int(left * 1000) + 1):
            try:
                data = os.read(fd, 1 << 16)
            except OSError:
                data = b""
            if not data:
                poller.unregister(fd)
                open_pipes.discard(fd)
                continue
            *lines, partial[fd] = (partial.get(fd, b"") + data).split(b"\n")
            for line in lines:
                if is_listening(line):
                    continue
                with contextlib.suppress(OSError, ValueError):
                    relay(line)


def _exited(pid: int) -> bool:
    """Whether the worker ``pid`` has ended (reaping it)."""
    try:
        return os.waitpid(pid, os.WNOHANG)[0] != 0
    except ChildProcessError:
        return True


def _end(workers: dict[int, tuple[int, int]], partial: dict[int, bytes],
         is_listening: Callable[[bytes], bool], relay: Callable[[bytes], bool]) -> None:
    """SIGINT to the workers still running, relay what they print as they end, then wait for
    them (SIGKILL after STOP_WAIT)."""
    for pid in workers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)
    end = time.monotonic() + STOP_WAIT
    _relay_until_closed([pipe for _, pipe in workers.values()], partial, end, is_listening,
                        relay)
    for pid, (_, pipe) in workers.items():
        while not _exited(pid):
            if time.monotonic() >= end:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)
                break
            time.sleep(0.02)
        with contextlib.suppress(OSError):
            os.close(pipe)
    workers.clear()
