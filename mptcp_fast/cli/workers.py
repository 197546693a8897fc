"""``proxy --engine kernel --workers N``: N processes, one listener each on the same address
(SO_REUSEPORT), so that a proxy uses N cores instead of one interpreter's.

Linux spreads the connections over the listeners by a hash of each connection's 4-tuple,
and routes every MP_JOIN of a connection to the MPTCP socket that accepted it, by the token
in the join (RFC 8684 §3.2): all the subflows of a connection end in the worker that
carries it, with nothing to configure. The userspace engine's workers need the C flag and an
address per worker for the same (balanced.py), and this supervisor.

The first process is the supervisor (net/workers.py's ``supervise``): it forks the workers
before it starts any thread, reads what each prints (one line per connection carried, a
JSON record under ``--json`` with the worker's number), prints it, counts the connections for ``--count`` and ends the workers
with SIGINT when the count is reached, on Ctrl-C (the workers get the terminal's SIGINT
too), on SIGTERM (exit status 143), or when one of them fails, whose exit status it then
returns; what the workers print as they end (a worker's closing record) is relayed too.
``ready`` (optional) runs once every worker listens, before the one listening line: the
userspace workers' balancer goes in place there (net/workers.py's ``run_balanced``). A worker
whose supervisor dies anyhow gets SIGTERM from the kernel (PR_SET_PDEATHSIG): no worker
outlives it holding the port.
"""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Callable

from ..net import workers as _net

__all__ = ["serve_workers"]


def serve_workers(args, serve: Callable[[object], int],
                  ready: Callable[[], dict] | None = None, *,
                  run: Callable[..., int] | None = None) -> int:
    """``serve(args)`` in ``args.workers`` processes (each with ``args.worker`` set to its
    number, 0 to N - 1); returns the exit status: 0 when all ended cleanly. ``ready()``, once
    every worker listens, returns what to add to the JSON listening record. ``run`` (net/
    workers.py's ``run_balanced`` with its plans bound, for the userspace workers) is called
    in place of ``supervise``, with the same hooks, its ``ready`` given the balancer's
    record."""
    carried = 0

    def work(number: int) -> int:
        args.worker = number
        return serve(args)

    def relay(line: bytes) -> bool:
        nonlocal carried
        sys.stdout.buffer.write(line + b"\n")
        sys.stdout.flush()
        if _kind(args, line) == "connection":
            carried += 1
        return bool(args.count) and carried >= args.count

    def listening(line: bytes) -> bool:
        return _kind(args, line) == "listening"

    label = f"mptcp-fast {args.command}"
    if run is not None:
        return run(is_listening=listening, relay=relay, label=label,
                   ready=lambda line, extra: _print_listening(args, line, extra))
    return _net.supervise(args.workers, work, is_listening=listening, relay=relay, label=label,
                          ready=lambda line: _print_listening(
                              args, line, ready() if ready is not None else {}))


def _kind(args, line: bytes) -> str:
    """What a worker's line is: its "listening" line, a "connection" record, or "other"."""
    if args.json:
        with contextlib.suppress(ValueError):
            return str(json.loads(line).get("event", "other"))
        return "other"
    if line.startswith((b"proxy (", b"serving (")):   # the worker's first line
        return "listening"
    if line.startswith((b"worker ", b" ")):       # a userspace worker's closing line, or
        return "other"                            # serve's lines of a connection's subflows
    return "connection"


def _print_listening(args, line: bytes, extra: dict) -> None:
    """One listening line for all the workers, once the last one listens."""
    if args.json:
        record = json.loads(line)
        record["workers"] = args.workers
        record.update(extra)
        print(json.dumps(record), flush=True)
    else:
        print(f"{line.decode(errors='replace')} ({args.workers} workers)", flush=True)
