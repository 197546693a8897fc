"""``proxy --engine kernel --workers N``: N processes, one listener each on the same address
(SO_REUSEPORT), so that a proxy uses N cores instead of one interpreter's.

Linux spreads the connections over the listeners by a hash of each connection's 4-tuple,
and routes every MP_JOIN of a connection to the MPTCP socket that accepted it, by the token
in the join (RFC 8684 §3.2): all the subflows of a connection end in the worker that
carries it, with nothing to configure. The userspace engine's workers need the C flag and an
address per worker for the same (balanced.py), and this supervisor.

The first process is the supervisor: it forks the workers before it starts any thread, reads
what each prints (one line per connection carried, a JSON record under ``--json`` with the
worker's number), prints it, counts the connections for ``--count`` and ends the workers
with SIGINT when the count is reached, on Ctrl-C (the workers get the terminal's SIGINT
too), on SIGTERM (exit status 143), or when one of them fails, whose exit status it then
returns; what the workers print as they end (a worker's closing record) is relayed too.
``ready`` (optional) runs once every worker listens, before the one listening line: the
userspace workers' balancer goes in place there. A worker whose supervisor dies anyhow gets SIGTERM from the kernel
(PR_SET_PDEATHSIG): no worker outlives it holding the port.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import sys
import time
from typing import Callable

__all__ = ["serve_workers"]

STOP_WAIT = 5.0               # seconds the workers have to end after SIGINT, then SIGKILL
PR_SET_PDEATHSIG = 1          # prctl(2): the signal a process gets when its parent dies


class _Terminated(Exception):
    """SIGTERM reached the supervisor."""


def _on_sigterm(signum, frame) -> None:
    raise _Terminated


def serve_workers(args, serve: Callable[[object], int],
                  ready: Callable[[], dict] | None = None) -> int:
    """``serve(args)`` in ``args.workers`` processes (each with ``args.worker`` set to its
    number, 0 to N - 1); returns the exit status: 0 when all ended cleanly. ``ready()``, once
    every worker listens, returns what to add to the JSON listening record."""
    workers: dict[int, tuple[int, int]] = {}     # pid -> (worker number, its stdout pipe)
    partial: dict[int, bytes] = {}               # pipe -> the start of a line not yet ended
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        for number in range(args.workers):
            read_end, write_end = os.pipe()
            pid = os.fork()
            if pid == 0:                          # the worker
                for _, other in workers.values():  # (the earlier workers' pipes are not its)
                    os.close(other)
                os.close(read_end)
                _run_worker(args, number, write_end, serve)   # (never returns)
            os.close(write_end)
            workers[pid] = (number, read_end)
        return _supervise(args, workers, partial, ready)
    except _Terminated:
        return 143
    finally:
        _end(args, workers, partial)
        signal.signal(signal.SIGTERM, previous)


def _run_worker(args, number: int, stdout: int, serve) -> None:
    """In the forked child: print to the pipe, serve, and leave with serve's status
    (os._exit: the supervisor's stack and atexit handlers are not the child's to run)."""
    status = 2
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _die_with_parent()
        os.dup2(stdout, 1)
        os.close(stdout)
        sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
        args.worker = number
        status = serve(args)
    except KeyboardInterrupt:
        status = 130
    except BaseException as exc:              # a worker's failure is one line, as the CLI's
        with contextlib.suppress(Exception):
            print(f"mptcp-fast {args.command}: worker {number}: {exc}", file=sys.stderr)
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


def _supervise(args, workers: dict[int, tuple[int, int]], partial: dict[int, bytes],
               ready: Callable[[], dict] | None) -> int:
    """Relay the workers' lines; the status once they are done or told to end."""
    pipes = {fd: number for number, fd in workers.values()}
    partial.update({fd: b"" for fd in pipes})
    listening: set[int] = set()
    carried = 0
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
            for line in lines:
                kind = _kind(args, line)
                if kind == "listening":
                    listening.add(pipes[fd])
                    if len(listening) == args.workers:
                        _print_listening(args, line, ready() if ready is not None else {})
                    continue
                sys.stdout.buffer.write(line + b"\n")
                sys.stdout.flush()
                if kind == "connection":
                    carried += 1
            if args.count and carried >= args.count:
                return 0
    return 0


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


def _relay_until_closed(args, pipes: list[int], partial: dict[int, bytes],
                        end: float) -> None:
    """Print the whole lines the workers write until each closes its end (it exited) or
    ``end``; what it had begun before (``partial``) comes first. A listening line not read
    yet (the others failed first) is not printed: they do not all listen."""
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
                if _kind(args, line) == "listening":
                    continue
                with contextlib.suppress(OSError, ValueError):
                    sys.stdout.buffer.write(line + b"\n")
                    sys.stdout.flush()


def _exited(pid: int) -> bool:
    """Whether the worker ``pid`` has ended (reaping it)."""
    try:
        return os.waitpid(pid, os.WNOHANG)[0] != 0
    except ChildProcessError:
        return True


def _end(args, workers: dict[int, tuple[int, int]], partial: dict[int, bytes]) -> None:
    """SIGINT to the workers still running, relay what they print as they end, then wait for
    them (SIGKILL after STOP_WAIT)."""
    for pid in workers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)
    end = time.monotonic() + STOP_WAIT
    _relay_until_closed(args, [pipe for _, pipe in workers.values()], partial, end)
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
