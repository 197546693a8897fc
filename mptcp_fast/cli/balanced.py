"""``proxy --engine userspace --direction mptcp-to-tcp --workers N --worker-address ADDR ...``
(and ``serve --workers N --worker-address ADDR ... --public ADDR``): the userspace engine in N
processes (one core each) behind one public address.

The mechanism (the plans, the nftables table, flag C and ADD_ADDR of each worker's own
address, the fork supervisor) is the net layer's: mptcp_fast/net/workers.py, whose
``serve_workers`` runs an asyncio handler the same way. Here are the command's argument
checks, its words for them, and its TCP Fast Open key.

Behind another L4 balancer (IPVS in NAT mode, a cloud NLB, another machine's nftables), the
same worker runs with ``--balancer none``: the balancer sends each machine's share of SYNs to
that machine's balanced address, and installs nothing here (docs/proxy.md).

The RFC 8803 Convert server half (``--convert``) runs in the same workers, each reading the
Convert messages of the connections it took. With ``--fastopen`` a client's next SYN, its
Connect TLV inside, may be balanced to another worker than the one that gave its cookie: the
supervisor draws one cookie key for all the workers (``--fastopen-key`` gives it, for machines
behind one balancer), and ``BalancedCookies`` lets a cookie at the balanced address cover the
client's address alone, so that every worker with the key takes it (RFC 7413 §4.1.2).
"""

from __future__ import annotations

import re

from ..errors import MptcpError
from ..net import workers as _net
from ..net.workers import TABLE_PREFIX, Balancer, BalancedCookies, WorkerPlan, ruleset

__all__ = ["WorkerPlan", "plan_workers", "ruleset", "Balancer", "check_arguments",
           "apply_plan", "public_address", "TABLE_PREFIX", "BalancedCookies",
           "fastopen_key", "FASTOPEN_KEY_SIZES"]


def plan_workers(addresses: list[str], workers: int) -> list[WorkerPlan]:
    """One ``WorkerPlan`` per ``--worker-address`` (net/workers.py's, in the options' words);
    ``workers`` of them."""
    if len(addresses) != workers:
        raise MptcpError(f"--workers {workers} needs one --worker-address per worker, got "
                         f"{len(addresses)}")
    return _net.plan_workers(addresses, name="--worker-address")


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
        option = "--public ADDRESS" if args.command == "serve" else \
            "--listen ADDRESS:PORT (not every address)"
        _net.check_public(public_address(args)[0], plans, option=option,
                          balancer="--balancer nftables", addresses="--worker-address")


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
    subflows arrive there), its device's, and the plan (net._Engine gives the engine flag C
    and the own address to announce: net/workers.py's ``worker_config``)."""
    args.address = [plan.balanced, plan.own]
    args.tun_address = [plan.kernel_side]
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
