#!/usr/bin/env python3
"""Throughput and latency of the update server under load (see bench/README.md).

Runs the production command, ``gunicorn --workers 2 --bind 127.0.0.1:PORT
'update_server.wsgi:app'``, on a data folder and a fresh PostgreSQL database
this script creates (and drops), and drives it over loopback from load
generator processes. In one run it prints:

1. signed check-ins per second and their p50/p99 latency: many enrolled
   pumps, each request a fresh nonce and timestamp signed by the pump's key
   (all signed before the timed window), a published release newer than the
   one the pumps report, so every check-in runs the assignment path and is
   answered with a release;
2. conditional ``timestamp.json`` polls (``If-None-Match`` -> 304) per second
   and their latency;
3. the floor of the same stack: a trivial Flask endpoint that returns
   ``{"ok": true}``, served by the same gunicorn command, driven by the same
   load generator at the same concurrency;
4. a reference that splits the check-in's cost: the same signed check-ins
   against the same app with the check-in's database write replaced by
   nothing (``--no-reference`` skips it), so the report can say what the
   write costs and how far the rest of a check-in is from the goals.

Then the ratio check-ins / trivial and PASS/FAIL against the goals of issue 3.
The exit status is 1 when a goal is missed or any request failed.

``--threads N`` runs every scenario with ``--threads N`` (gunicorn's
gthread worker, still 2 worker processes) to compare with the production
command; ``--db-setting NAME=VALUE`` sets a PostgreSQL setting on the
benchmark database only (e.g. ``commit_delay``).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import json
import math
import multiprocessing as mp
import os
import secrets
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request
import uuid
from array import array
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench_repo import make_repo

# Heavy imports (signer, update_server, SQLAlchemy, psycopg, rich) happen in
# the functions that need them: load generator processes are spawned and
# import only this module, so they start fast and stay small.

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = "sigma-spectrum"
HARDWARE_ID = "rev-b"
RUNNING = ("1.0.0", 1)  # what the pumps report running
NEWEST = ("1.1.0", 2)  # the release they are assigned
PASSPHRASE_ENV = "PUMPGUARD_PASSPHRASE"
PG_MAINTENANCE = os.environ.get(
    "PUMPGUARD_TEST_POSTGRES", "postgresql+psycopg:///postgres?host=/var/run/postgresql"
)
GUNICORN_WORKERS = 2
# The production command's threads per worker (docs/deployment.md); 1 is
# gunicorn's sync worker, more its gthread worker. --threads overrides it.
GUNICORN_THREADS = 1

DEFAULT_DURATION = 10.0
DEFAULT_WARMUP = 2.0
DEFAULT_CONCURRENCY = 8
DEFAULT_PROCESSES = 2
DEFAULT_DEVICES = 1000
REQUEST_TIMEOUT = 10.0
# Pre-signed check-ins carry their signing time; the server accepts them for
# clock_skew (300 s by default) seconds, so a run must stay well inside that.
MAX_WINDOW = 120.0

# Other processes using this share of the machine in a window get a warning.
OTHER_WORK_WARNING = 0.05

GOAL_CHECKINS = 2000.0
GOAL_P99_MS = 50.0
GOAL_RATIO = 0.5

TRIVIAL_APP = '''\
"""The floor of the stack for bench/server_load.py: Flask doing nothing."""

from flask import Flask, jsonify

app = Flask(__name__)


@app.get("/ok")
def ok():
    return jsonify({"ok": True})
'''

# The reference for what the database write costs: the production app with
# the check-in's one statement (devices._write_checkin) replaced by nothing.
# Everything else a check-in does runs: routing, the signature, the
# timestamp window, validation, the assignment, the answer. Only this script
# ever serves it; a nonce is never recorded, so it must not face a network.
NO_WRITE_APP = '''\
"""bench/server_load.py's reference: the signed check-in without its database write."""

from update_server import devices
from update_server.wsgi import app


def _no_write(*args, **kwargs):
    return None


devices._write_checkin = _no_write
'''
NO_WRITE = "check-in, no write (reference)"


# --------------------------------------------------------------- load generator


@dataclass
class Job:
    """What one load generator process does in one scenario.

    Attributes:
        port: The server's port on 127.0.0.1.
        connections: Requests this process keeps in flight.
        warmup: Seconds run before the measured window.
        duration: Seconds of the measured window.
        kind: ``static`` (the same request over and over) or ``checkin``.
        request: The raw request for ``static``.
        devices: ``(device_id, raw private key)`` for ``checkin``.
        body: The check-in body for ``checkin``.
        presign: Check-ins to sign before the window (one nonce each).
        expect: Bytes a successful response body must contain.
    """

    port: int
    connections: int
    warmup: float
    duration: float
    kind: str
    request: bytes = b""
    devices: list[tuple[str, bytes]] = field(default_factory=list)
    body: bytes = b""
    presign: int = 0
    expect: bytes = b""


def raw_request(
    method: str, path: str, port: int, headers: dict[str, str] | None = None, body: bytes = b""
) -> bytes:
    """One HTTP/1.1 request as bytes on the wire."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "User-Agent: pumpguard-bench"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def presign_checkins(job: Job) -> list[bytes]:
    """Sign ``job.presign`` check-ins round-robin over the job's devices.

    Each is signed exactly as a pump signs it (``pumpguard.device_auth``), with
    its own random nonce and the current time.
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from pumpguard.device_auth import sign_request

    keys = [(d, Ed25519PrivateKey.from_private_bytes(k)) for d, k in job.devices]
    out: list[bytes] = []
    base = {"Content-Type": "application/json"}
    for i in range(job.presign):
        device_id, key = keys[i % len(keys)]
        path = f"/api/v1/devices/{device_id}/checkin"
        headers = base | sign_request(key, device_id, "POST", path, job.body)
        out.append(raw_request("POST", path, job.port, headers, job.body))
    return out


class _Flight:
    """One request in flight on one connection."""

    __slots__ = ("buf", "connecting", "out", "sent", "sock", "started")

    def __init__(self, sock: socket.socket, out: bytes, started: float) -> None:
        self.sock = sock
        self.out = out
        self.sent = 0
        self.buf = b""
        self.started = started
        self.connecting = True


def _parse_response(buf: bytes, eof: bool) -> tuple[int, bool, bytes] | None:
    """``(status, server keeps the connection, body)`` once complete, else None."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buf[:end].decode("latin-1").lower()
    status = int(head[9:12])
    length: int | None = None
    keep = not head.startswith("http/1.0")
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        name = name.strip()
        if name == "content-length":
            length = int(value)
        elif name == "connection":
            keep = value.strip() != "close"
    if status == 304 or status == 204 or 100 <= status < 200:
        length = 0
    body = buf[end + 4 :]
    if length is None:
        return (status, False, body) if eof else None
    if len(body) < length:
        return None
    return status, keep, body[:length]


def run_load(job: Job, requests: Sequence[bytes] | None, t_start: float) -> dict[str, Any]:
    """Drive the server from ``t_start`` (``time.monotonic``) for warm-up + window.

    ``job.connections`` requests are kept in flight over non-blocking sockets.
    A connection the server keeps open is reused; one it closes (gunicorn's
    sync worker closes every connection) is replaced by a new one, and the
    connect is part of the request's latency, as it is for a pump.

    Returns:
        Counts, latencies (seconds) of the requests completed in the window,
        and errors by kind over the whole run.
    """
    sel = selectors.DefaultSelector()
    addr = ("127.0.0.1", job.port)
    measure_from = t_start + job.warmup
    end = measure_from + job.duration
    latencies = array("d")
    errors: Counter[str] = Counter()
    samples: dict[str, str] = {}
    next_index = 0
    exhausted = False
    flights: set[_Flight] = set()

    def next_request() -> bytes | None:
        nonlocal next_index, exhausted
        if requests is None:
            return job.request
        if next_index >= len(requests):
            exhausted = True
            return None
        next_index += 1
        return requests[next_index - 1]

    def open_flight(out: bytes) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        flight = _Flight(sock, out, time.monotonic())
        code = sock.connect_ex(addr)
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            fail_kind = errno.errorcode.get(code, str(code))
            errors[f"connect {fail_kind}"] += 1
            time.sleep(0.001)  # do not spin on a dead server
            return
        flights.add(flight)
        sel.register(sock, selectors.EVENT_WRITE, flight)

    def close(flight: _Flight) -> None:
        flights.discard(flight)
        with contextlib.suppress(KeyError, ValueError):
            sel.unregister(flight.sock)
        flight.sock.close()

    def issue(reuse: _Flight | None) -> None:
        if time.monotonic() >= end:
            if reuse is not None:
                close(reuse)
            return
        out = next_request()
        if out is None:
            if reuse is not None:
                close(reuse)
            return
        if reuse is None:
            open_flight(out)
            return
        reuse.out, reuse.sent, reuse.buf = out, 0, b""
        reuse.started = time.monotonic()
        sel.modify(reuse.sock, selectors.EVENT_WRITE, reuse)

    def fail(flight: _Flight, kind: str) -> None:
        close(flight)
        errors[kind] += 1
        issue(None)

    def done(flight: _Flight, status: int, keep: bool, body: bytes) -> None:
        now = time.monotonic()
        good = (200 <= status < 300 or status == 304) and (
            not job.expect or job.expect in body or status == 304
        )
        if good:
            if measure_from <= now < end:
                latencies.append(now - flight.started)
        else:
            kind = f"HTTP {status}" if not 200 <= status < 300 else f"HTTP {status} unexpected body"
            errors[kind] += 1
            samples.setdefault(kind, body[:300].decode("utf-8", "replace"))
        if keep:
            issue(flight)
        else:
            close(flight)
            issue(None)

    while time.monotonic() < t_start:
        time.sleep(min(0.01, max(0.0, t_start - time.monotonic())))
    for _ in range(job.connections):
        issue(None)
    last_sweep = time.monotonic()
    while flights:
        now = time.monotonic()
        if now > end + REQUEST_TIMEOUT:
            break
        for key, mask in sel.select(timeout=0.05):
            flight: _Flight = key.data
            sock = flight.sock
            if mask & selectors.EVENT_WRITE:
                if flight.connecting:
                    code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if code:
                        fail(flight, f"connect {errno.errorcode.get(code, str(code))}")
                        continue
                    flight.connecting = False
                try:
                    flight.sent += sock.send(flight.out[flight.sent :])
                except BlockingIOError:
                    continue
                except OSError as e:
                    fail(flight, f"send {errno.errorcode.get(e.errno or 0, str(e))}")
                    continue
                if flight.sent == len(flight.out):
                    sel.modify(sock, selectors.EVENT_READ, flight)
                continue
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError as e:
                fail(flight, f"recv {errno.errorcode.get(e.errno or 0, str(e))}")
                continue
            flight.buf += data
            try:
                parsed = _parse_response(flight.buf, eof=not data)
            except (ValueError, IndexError):
                fail(flight, "malformed response")
                continue
            if parsed is not None:
                done(flight, *parsed)
            elif not data:
                fail(flight, "closed before a complete response")
        if now - last_sweep > 0.1:
            last_sweep = now
            for flight in [f for f in flights if now - f.started > REQUEST_TIMEOUT]:
                fail(flight, "timeout")
    unfinished = len(flights)
    for flight in list(flights):
        close(flight)
    return {
        "latencies": latencies.tobytes(),
        "errors": dict(errors),
        "samples": samples,
        "exhausted": exhausted,
        "unfinished": unfinished,
    }


def generator_main(conn: Connection, job: Job) -> None:
    """A load generator process: prepare, report ready, wait for go, run, report."""
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us
        requests = presign_checkins(job) if job.kind == "checkin" else None
        conn.send(("ready", len(requests) if requests is not None else 0))
        if not conn.poll(600):
            return
        message, t_start = conn.recv()
        if message != "go":
            return
        conn.send(("result", run_load(job, requests, t_start)))
    except Exception:
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


# ------------------------------------------------------------ CPU accounting


_TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcCpu:
    """One process's CPU counters (seconds) from ``/proc/PID/stat``."""

    name: str
    ppid: int
    own: float  # user + system
    reaped: float  # of its children that ended and were waited for


def process_cpu() -> dict[int, ProcCpu]:
    """The CPU counters of every process on the machine."""
    out: dict[int, ProcCpu] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        name = raw[raw.index("(") + 1 : raw.rindex(")")]
        f = raw[raw.rindex(")") + 2 :].split()
        own = (int(f[11]) + int(f[12])) / _TICK
        out[int(entry.name)] = ProcCpu(name, int(f[1]), own, (int(f[13]) + int(f[14])) / _TICK)
    return out


def child_pids(parent: int) -> list[int]:
    """Direct children of ``parent`` (gunicorn's workers)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        if int(raw[raw.rindex(")") + 2 :].split()[1]) == parent:
            out.append(int(entry.name))
    return out


def machine_cpu() -> tuple[float, float, float]:
    """(busy, irq + softirq, steal) CPU seconds of the whole machine since boot."""
    v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is inside user)
    busy = v[0] + v[1] + v[2] + v[5] + v[6]
    return busy / _TICK, (v[5] + v[6]) / _TICK, v[7] / _TICK


def attribute_cpu(
    before: dict[int, ProcCpu],
    after: dict[int, ProcCpu],
    roles: dict[int, str],
    machine: tuple[float, float, float],
) -> tuple[dict[str, float], list[tuple[str, float]]]:
    """CPU seconds between two snapshots by role, and the busiest other processes.

    Processes without a role are kernel threads (block I/O, file system
    journal: what the database's fsyncs cost), PostgreSQL's background
    processes (WAL writer, checkpointer ...), or ``other processes``, which
    also get the CPU of processes that ended in between (counted in their
    parent's reaped children time: other sessions' database backends, test
    subprocesses).
    """
    cpu = dict.fromkeys(CPU_PARTS, 0.0)
    others: defaultdict[str, float] = defaultdict(float)
    reaped_total = 0.0
    for pid, now in after.items():
        then = before.get(pid, ProcCpu(now.name, now.ppid, 0.0, 0.0))
        used = max(0.0, now.own - then.own)
        role = roles.get(pid)
        if role is None:
            if pid == 2 or now.ppid == 2:
                role = "kernel threads"
            elif now.name == "postgres":
                role = "postgres background"
            else:
                role = "other processes"
                others[now.name] += used
        cpu[role] += used
        reaped_total += max(0.0, now.reaped - then.reaped)
    busy, irq, steal = machine
    cpu["kernel irq"] = irq
    # A reaped child's whole life is in its parent's figure, not only the
    # window's part: count it only up to what is otherwise unexplained.
    rest = max(0.0, busy - sum(cpu.values()))
    cpu["other processes"] += min(reaped_total, rest)
    if reaped_total:
        others["(ended processes)"] += min(reaped_total, rest)
    cpu["unattributed"] = rest - min(reaped_total, rest)
    cpu["machine"] = busy
    cpu["steal"] = steal
    busiest = sorted(others.items(), key=lambda item: -item[1])[:3]
    return cpu, [(n, round(c, 2)) for n, c in busiest if c >= 0.05]


CPU_PARTS = (
    "gunicorn",
    "postgres bench db",
    "postgres background",
    "kernel threads",
    "generator",
    "other processes",
)


# ------------------------------------------------------------ the stack


def pg_dsn(url: str) -> str:
    """A SQLAlchemy PostgreSQL URL as a libpq/psycopg one."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@contextlib.contextmanager
def fresh_database(maintenance: str, settings: Sequence[tuple[str, str]] = ()) -> Iterator[str]:
    """A new PostgreSQL database, dropped afterwards (also on errors).

    ``settings`` are applied to it alone (``ALTER DATABASE ... SET``), never
    to the server other sessions share.
    """
    import psycopg
    from psycopg import sql

    name = f"pumpguard_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_dsn(maintenance), autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
        for setting, value in settings:
            conn.execute(
                sql.SQL("ALTER DATABASE {} SET {} = {}").format(
                    sql.Identifier(name), sql.Identifier(setting), sql.Literal(value)
                )
            )
    base, _, query = maintenance.partition("?")
    url = base.rsplit("/", 1)[0] + f"/{name}" + (f"?{query}" if query else "")
    try:
        yield url
    finally:
        with psycopg.connect(pg_dsn(maintenance), autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_roles(url: str) -> dict[int, str]:
    """PostgreSQL processes by role: this database's backends, other databases' ones."""
    import psycopg

    with psycopg.connect(pg_dsn(url), connect_timeout=5) as conn:
        rows = conn.execute(
            "SELECT pid, datname = current_database(), backend_type FROM pg_stat_activity"
            " WHERE pid <> pg_backend_pid()"
        ).fetchall()
    roles = {}
    for pid, ours, backend_type in rows:
        if ours:
            roles[int(pid)] = "postgres bench db"
        elif backend_type == "client backend":
            roles[int(pid)] = "other processes"
    return roles


def pg_settings(url: str) -> dict[str, str]:
    """The PostgreSQL settings that decide what a commit costs."""
    import psycopg

    with psycopg.connect(pg_dsn(url), connect_timeout=5) as conn:
        rows = conn.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN"
            " ('fsync', 'synchronous_commit', 'commit_delay', 'commit_siblings',"
            " 'server_version')"
        ).fetchall()
    return {str(k): str(v) for k, v in rows}


@dataclass
class Stack:
    """What the setup built: the server data folder and the pumps."""

    data_dir: Path
    database_url: str
    devices: list[tuple[str, bytes]]
    body: bytes


def _checkin_body(firmware_sha256: str) -> bytes:
    version, counter = RUNNING
    report = {
        "product": PRODUCT,
        "hardware_id": HARDWARE_ID,
        "version": version,
        "release_counter": counter,
        "slots": {
            "a": {
                "state": "active",
                "version": version,
                "release_counter": counter,
                "sha256": firmware_sha256,
            },
            "b": {"state": "inactive"},
        },
        "last_update": {
            "version": version,
            "release_counter": counter,
            "result": "committed",
            "at": "2026-01-05T10:00:00Z",
        },
        "therapy": {"state": "idle"},
        "agent_state": "idle",
    }
    return json.dumps(report, separators=(",", ":")).encode()


def build_stack(work: Path, database_url: str, n_devices: int) -> Stack:
    """Keys, a repository with two published releases, a data folder, enrolled pumps.

    Built as the tests build it (:mod:`bench_repo`), then ``init_data_dir``.
    Pumps are enrolled directly in the database (the rows ``POST
    /api/v1/devices`` writes), which takes a second for thousands of pumps
    instead of a minute.
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    from sqlalchemy import insert

    from update_server.datadir import init_data_dir
    from update_server.db import engine_for
    from update_server.models import Base

    bench = make_repo(work, PRODUCT, PASSPHRASE_ENV)
    keys, repo_path = bench.keys, bench.path
    running_sha = ""
    for version, counter in (RUNNING, NEWEST):
        firmware = work / f"fw-{version}.img"
        firmware.write_bytes((f"PUMPGUARD-FW {version}\n".encode() * 4096)[:65536])
        bench.publish(
            version, counter, firmware, (HARDWARE_ID, "rev-c"), f"bench release {version}"
        )
        if (version, counter) == RUNNING:
            running_sha = hashlib.sha256(firmware.read_bytes()).hexdigest()

    data_dir = work / "data"
    init_data_dir(
        data_dir,
        repo=repo_path,
        snapshot_key=str(keys / "snapshot.key"),
        timestamp_key=str(keys / "timestamp.key"),
        database_url=database_url,
        passphrase_env=PASSPHRASE_ENV,
    )
    devices: list[tuple[str, bytes]] = []
    rows = []
    now = datetime.now(UTC)
    for i in range(n_devices):
        private = Ed25519PrivateKey.generate()
        raw_pub = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        device_id = f"pump-{i:06d}"
        devices.append((device_id, private.private_bytes_raw()))
        rows.append(
            {
                "device_id": device_id,
                "hardware_id": HARDWARE_ID,
                "product": PRODUCT,
                "public_key": raw_pub.hex(),
                "enrolled_at": now,
                "status": {},
            }
        )
    engine = engine_for(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(insert(Base.metadata.tables["devices"]), rows)
        # A fleet's database has planner statistics (autovacuum keeps them);
        # one just bulk-loaded has none until autovacuum gets to it, so the
        # figures would depend on when that happens. Four alternated runs
        # with and without this measured the same PostgreSQL CPU per
        # check-in (217-223 µs): the check-in's plan does not depend on it.
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")
    finally:
        engine.dispose()
    return Stack(data_dir, database_url, devices, _checkin_body(running_sha))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _die_with_parent() -> None:
    # Linux: gunicorn gets SIGTERM if this script dies without cleaning up.
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Gunicorn:
    """A running gunicorn (the production command)."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def worker_pids(self) -> list[int]:
        """The arbiter and its workers."""
        return [self.proc.pid, *child_pids(self.proc.pid)]

    def log_tail(self, lines: int = 30) -> str:
        """The end of gunicorn's log."""
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


def gunicorn_options(threads: int) -> list[str]:
    """The production command's options (workers, threads), as measured."""
    options = ["--workers", str(GUNICORN_WORKERS)]
    if threads > 1:
        options += ["--threads", str(threads)]
    return options


def gunicorn_command(threads: int) -> str:
    """The measured command, as printed."""
    return f"gunicorn {' '.join(gunicorn_options(threads))} --bind 127.0.0.1:PORT"


@contextlib.contextmanager
def gunicorn(
    app: str, cwd: Path, env: dict[str, str], log: Path, probe: str, threads: int
) -> Iterator[Gunicorn]:
    """Run ``gunicorn --workers 2 --bind 127.0.0.1:PORT APP``; stopped on exit.

    Waits (at most 60 s) until ``probe`` answers, and fails with gunicorn's
    log if it does not.
    """
    port = free_port()
    exe = Path(sys.executable).with_name("gunicorn")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "gunicorn"]
    cmd += [*gunicorn_options(threads), "--bind", f"127.0.0.1:{port}", app]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us, and we stop gunicorn
            preexec_fn=_die_with_parent,  # single-threaded here
        )
    server = Gunicorn(proc, port, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited ({proc.returncode}):\n{server.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not answer in 60 s:\n{server.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{probe}", timeout=2):
                    pass
                # One worker answered; wait until both are forked (the warm-up
                # covers the second one's import of the app).
                if len(child_pids(proc.pid)) >= GUNICORN_WORKERS:
                    break
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.2)
        yield server
    finally:
        if proc.poll() is None:
            proc.terminate()  # graceful: the arbiter stops its workers
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


# ------------------------------------------------------------ scenarios


@dataclass
class Result:
    """One scenario's figures."""

    name: str
    ok: int
    duration: float
    latencies_ms: list[float]
    errors: dict[str, int]
    samples: dict[str, str]
    unfinished: int
    exhausted: bool
    cpu: dict[str, float]
    busiest_others: list[tuple[str, float]]
    concurrency: int
    processes: int

    @property
    def rate(self) -> float:
        """Successful requests per second in the window."""
        return self.ok / self.duration

    def pct(self, q: float) -> float:
        """A latency percentile (nearest rank), in ms."""
        if not self.latencies_ms:
            return math.nan
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]

    @property
    def error_count(self) -> int:
        """Failed requests over the whole run, warm-up included."""
        return sum(self.errors.values())

    def cpu_per_request_us(self, part: str) -> float:
        """CPU microseconds per successful request spent by ``part``."""
        return self.cpu[part] / self.ok * 1e6 if self.ok else math.nan

    def to_json(self) -> dict[str, Any]:
        """Machine-readable figures."""
        return {
            "requests_ok": self.ok,
            "duration_s": self.duration,
            "per_second": round(self.rate, 1),
            "latency_ms": {
                "p50": round(self.pct(50), 2),
                "p90": round(self.pct(90), 2),
                "p99": round(self.pct(99), 2),
                "max": round(max(self.latencies_ms, default=math.nan), 2),
            },
            "errors": self.errors,
            "error_samples": self.samples,
            "unfinished_at_end": self.unfinished,
            "presigned_exhausted": self.exhausted,
            "cpu_s": {k: round(v, 3) for k, v in self.cpu.items()},
            "busiest_other_processes_cpu_s": dict(self.busiest_others),
            "cpu_us_per_request": {
                k: round(self.cpu_per_request_us(k), 1)
                for k in self.cpu
                if k not in ("machine", "steal")
            },
            "concurrency": self.concurrency,
            "generator_processes": self.processes,
        }


def cpu_budget(checkin: Result, trivial: Result, cpus: int) -> dict[str, float]:
    """What the goals allow a check-in to cost in machine CPU, and what it cost.

    Every process on the machine counts (server, database, kernel, and the
    load generator, which a real fleet does not put on the server): the
    machine is the budget the goals are measured against.
    """
    return {
        "goal": GOAL_CHECKINS,
        "cpus": cpus,
        "budget_us": cpus * 1e6 / GOAL_CHECKINS,
        "spent_us": checkin.cpu_per_request_us("machine"),
        "gunicorn_us": checkin.cpu_per_request_us("gunicorn"),
        "trivial_us": trivial.cpu_per_request_us("machine"),
        "trivial_gunicorn_us": trivial.cpu_per_request_us("gunicorn"),
        "ratio_goal": GOAL_RATIO,
        "ratio_budget_us": trivial.cpu_per_request_us("machine") / GOAL_RATIO,
    }


def write_split(checkin: Result, reference: Result, trivial: Result) -> dict[str, float]:
    """What the check-in's database write costs, from the no-write reference.

    The difference in machine CPU per request between the check-in and the
    same check-in without its write, split by where it was spent, and what
    the rest of the check-in costs against the ratio goal's budget.
    """
    return {
        "write_us": checkin.cpu_per_request_us("machine") - reference.cpu_per_request_us("machine"),
        "write_gunicorn_us": checkin.cpu_per_request_us("gunicorn")
        - reference.cpu_per_request_us("gunicorn"),
        "write_pg_us": checkin.cpu_per_request_us("postgres bench db")
        - reference.cpu_per_request_us("postgres bench db"),
        "rest_us": reference.cpu_per_request_us("machine"),
        "rest_rate": reference.rate,
        "rest_ratio": ratio(reference.rate, trivial.rate),
        "ratio_budget_us": trivial.cpu_per_request_us("machine") / GOAL_RATIO,
    }


def ratio(a: float, b: float) -> float:
    """``a / b``, NaN when ``b`` is 0."""
    return a / b if b else math.nan


def split(total: int, parts: int) -> list[int]:
    """``total`` spread over ``parts`` as evenly as possible."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def run_scenario(
    name: str,
    jobs: list[Job],
    server: Gunicorn,
    database_url: str,
    log: Callable[[str], None],
) -> Result:
    """Start one generator process per job, run them in step, gather the figures.

    CPU is attributed from ``/proc`` snapshots at the start and end of the
    measured window: gunicorn (arbiter and workers), the benchmark database's
    backends, PostgreSQL's background processes, the load generators, every
    other process, and the kernel's interrupt time.
    """
    ctx = mp.get_context("spawn")
    procs: list[tuple[mp.process.BaseProcess, Connection]] = []
    try:
        for job in jobs:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=generator_main, args=(child, job), daemon=True)
            proc.start()
            child.close()
            procs.append((proc, parent))
        for _, conn in procs:
            if not conn.poll(300):
                raise RuntimeError(f"{name}: a load generator did not get ready")
            kind, value = conn.recv()
            if kind == "error":
                raise RuntimeError(f"{name}: load generator failed:\n{value}")
        warmup, duration = jobs[0].warmup, jobs[0].duration
        t_start = time.monotonic() + 0.3
        for _, conn in procs:
            conn.send(("go", t_start))
        log(f"{name}: {warmup:g} s warm-up + {duration:g} s measured ...")
        # CPU of the server side and of the whole machine over the window.
        time.sleep(max(0.0, t_start + warmup - time.monotonic()))
        roles = dict.fromkeys(server.worker_pids(), "gunicorn")
        roles |= dict.fromkeys((p.pid for p, _ in procs if p.pid), "generator")
        roles |= pg_roles(database_url)
        machine0 = machine_cpu()
        before = process_cpu()
        time.sleep(max(0.0, t_start + warmup + duration - time.monotonic()))
        after = process_cpu()
        machine1 = machine_cpu()
        roles = pg_roles(database_url) | roles
        outs = []
        for p, conn in procs:
            if not conn.poll(warmup + duration + REQUEST_TIMEOUT + 30):
                raise RuntimeError(f"{name}: a load generator did not report")
            kind, value = conn.recv()
            if kind == "error":
                raise RuntimeError(f"{name}: load generator failed:\n{value}")
            outs.append(value)
            p.join(10)
    finally:
        for p, conn in procs:
            conn.close()
            if p.is_alive():
                p.terminate()
                p.join(5)
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    samples: dict[str, str] = {}
    for out in outs:
        arr = array("d")
        arr.frombytes(out["latencies"])
        latencies.extend(x * 1000 for x in arr)
        errors.update(out["errors"])
        for k, v in out["samples"].items():
            samples.setdefault(k, v)
    (busy0, irq0, steal0), (busy1, irq1, steal1) = machine0, machine1
    cpu, busiest = attribute_cpu(
        before, after, roles, (busy1 - busy0, irq1 - irq0, steal1 - steal0)
    )
    return Result(
        name=name,
        ok=len(latencies),
        duration=duration,
        latencies_ms=latencies,
        errors=dict(errors),
        samples=samples,
        unfinished=sum(o["unfinished"] for o in outs),
        exhausted=any(o["exhausted"] for o in outs),
        cpu=cpu,
        busiest_others=busiest,
        concurrency=sum(j.connections for j in jobs),
        processes=len(jobs),
    )


def static_jobs(args: argparse.Namespace, port: int, request: bytes, expect: bytes) -> list[Job]:
    """Jobs repeating one request."""
    return [
        Job(port, n, args.warmup, args.duration, "static", request=request, expect=expect)
        for n in split(args.concurrency, args.processes)
        if n
    ]


def checkin_jobs(args: argparse.Namespace, port: int, stack: Stack, budget: int) -> list[Job]:
    """Jobs of signed check-ins; pumps are split between the processes."""
    conns = [n for n in split(args.concurrency, args.processes) if n]
    per_job = split(budget, len(conns))
    return [
        Job(
            port,
            n,
            args.warmup,
            args.duration,
            "checkin",
            devices=stack.devices[i :: len(conns)],
            body=stack.body,
            presign=per_job[i],
            expect=b'"assigned":{',
        )
        for i, n in enumerate(conns)
    ]


def _http(
    url: str, method: str = "GET", headers: dict[str, str] | None = None, body: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def preflight_checkin(port: int, stack: Stack) -> str:
    """One signed check-in over HTTP: it must succeed and assign the newest release."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from pumpguard.device_auth import sign_request

    device_id, raw = stack.devices[0]
    path = f"/api/v1/devices/{device_id}/checkin"
    headers = {"Content-Type": "application/json"} | sign_request(
        Ed25519PrivateKey.from_private_bytes(raw), device_id, "POST", path, stack.body
    )
    status, _, body = _http(f"http://127.0.0.1:{port}{path}", "POST", headers, stack.body)
    if status != 200:
        raise RuntimeError(f"pre-flight check-in failed: HTTP {status} {body[:300]!r}")
    assigned = json.loads(body)["assigned"]
    if not assigned or assigned["version"] != NEWEST[0]:
        raise RuntimeError(f"pre-flight check-in assigned {assigned!r}, not {NEWEST[0]}")
    return str(assigned["version"])


def preflight_timestamp(port: int) -> str:
    """The timestamp's ETag; a conditional GET with it must be a 304."""
    url = f"http://127.0.0.1:{port}/tuf/metadata/timestamp.json"
    status, headers, _ = _http(url)
    etag = headers.get("ETag", "")
    if status != 200 or not etag:
        raise RuntimeError(f"GET timestamp.json: HTTP {status}, ETag {etag!r}")
    status, _, _ = _http(url, headers={"If-None-Match": etag})
    if status != 304:
        raise RuntimeError(f"conditional GET timestamp.json: HTTP {status}, not 304")
    return etag


# ------------------------------------------------------------ report


@dataclass
class Check:
    """One goal and whether it was met."""

    goal: str
    passed: bool
    detail: str


def check_goals(checkin: Result, trivial: Result, all_results: list[Result]) -> list[Check]:
    """The goals of issue 3, and the run's own validity (no errors)."""
    rel = ratio(checkin.rate, trivial.rate)
    checks = [
        Check(
            f">= {GOAL_CHECKINS:,.0f} signed check-ins/s",
            checkin.rate >= GOAL_CHECKINS,
            f"{checkin.rate:,.0f}/s",
        ),
        Check(
            f"check-in p99 <= {GOAL_P99_MS:g} ms",
            checkin.pct(99) <= GOAL_P99_MS,
            f"{checkin.pct(99):.1f} ms",
        ),
        Check(
            f"check-in throughput >= {GOAL_RATIO:g} x trivial endpoint",
            rel >= GOAL_RATIO,
            f"{rel:.2f} x ({checkin.rate:,.0f} / {trivial.rate:,.0f})",
        ),
    ]
    errors = sum(r.error_count for r in all_results)
    exhausted = [r.name for r in all_results if r.exhausted]
    checks.append(
        Check(
            "no failed request, enough pre-signed check-ins",
            errors == 0 and not exhausted,
            f"{errors} failed"
            + (f"; pre-signed requests ran out in {exhausted}" if exhausted else ""),
        )
    )
    return checks


def print_report(
    results: list[Result], checks: list[Check], info: dict[str, Any], elapsed: float
) -> None:
    """Tables of the figures, the ratios and the verdicts."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=130)
    console.print(
        f"{info['command']} (gunicorn {info['gunicorn']}, {info['worker_class']} workers),"
        f" PostgreSQL {info['postgres']['server_version']} ("
        + ", ".join(f"{k}={v}" for k, v in info["postgres"].items() if k != "server_version")
        + f"), {info['cpus']} CPUs"
        f" shared by server, database and load generator; {info['devices']:,} pumps;"
        f" concurrency {info['concurrency']} over {info['processes']} generator processes;"
        f" {info['warmup']:g} s warm-up + {info['duration']:g} s measured per scenario"
    )
    table = Table(title="Throughput and latency (successful requests in the measured window)")
    for col in ("scenario", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors"):
        table.add_column(col, justify="left" if col == "scenario" else "right")
    for r in results:
        table.add_row(
            r.name,
            f"{r.rate:,.0f}",
            f"{r.pct(50):.1f}",
            f"{r.pct(90):.1f}",
            f"{r.pct(99):.1f}",
            f"{max(r.latencies_ms, default=math.nan):.1f}",
            f"[bold red]{r.error_count}[/bold red]" if r.error_count else "0",
        )
    console.print(table)
    cpu = Table(title="CPU per successful request in the measured window (µs)")
    cpu.add_column("scenario")
    columns = (
        ("gunicorn", "gunicorn"),
        ("postgres bench db", "pg"),
        ("postgres background", "pg bg"),
        ("kernel threads", "kthreads"),
        ("generator", "loadgen"),
        ("kernel irq", "irq"),
        ("other processes", "other"),
    )
    for _, title in columns:
        cpu.add_column(title, justify="right")
    cpu.add_column("busy", justify="right")
    for r in results:
        cpu.add_row(
            r.name,
            *(f"{r.cpu_per_request_us(part):,.0f}" for part, _ in columns),
            f"{r.cpu['machine'] / r.duration / info['cpus'] * 100:.0f}%"
            + (
                f" +{steal:.0f}% steal"
                if (steal := r.cpu["steal"] / r.duration / info["cpus"] * 100) >= 1
                else ""
            ),
        )
    console.print(cpu)
    console.print(
        "[dim]pg: the benchmark database's backends; pg bg: WAL writer, checkpointer and"
        " PostgreSQL's other service processes; kthreads: kernel threads (block I/O and file"
        " system journal, what the commits' fsyncs cost); loadgen: the load generator;"
        " irq: interrupts and softirqs (loopback networking); other: everything else running on"
        " the machine, including processes that ended in the window; busy: the machine's"
        " utilisation.[/dim]"
    )
    for r in results:
        share = r.cpu["other processes"] / r.duration / info["cpus"]
        if share >= OTHER_WORK_WARNING:
            top = ", ".join(f"{n} {c:.1f} s" for n, c in r.busiest_others)
            console.print(
                f"[yellow]note: other work used {share:.0%} of the machine during {r.name}"
                f" ({top}): its figures are lower than on a quiet machine[/yellow]"
            )
    for r in results:
        if r.error_count:
            console.print(f"[bold red]!!! {r.name}: {r.error_count} FAILED REQUESTS[/bold red]")
            for kind, n in sorted(r.errors.items()):
                sample = r.samples.get(kind)
                console.print(f"[red]    {n} x {kind}[/red]" + (f": {sample}" if sample else ""))
        if r.exhausted:
            console.print(f"[bold red]!!! {r.name}: the pre-signed check-ins ran out[/bold red]")
        if r.unfinished:
            console.print(f"[yellow]{r.name}: {r.unfinished} requests in flight at the end[/]")
    by = {r.name: r for r in results}
    trivial = by["trivial endpoint"]
    console.print("Ratios to the trivial endpoint (same gunicorn, same load):")
    for r in results:
        if r is not trivial:
            console.print(f"  {r.name}: {ratio(r.rate, trivial.rate):.2f} x throughput")
    budget = cpu_budget(by["signed check-in"], trivial, info["cpus"])
    console.print(
        "CPU budget: {goal:,.0f} check-ins/s on {cpus} CPUs leave at most {budget_us:,.0f} µs of"
        " machine CPU per check-in, at full use; a check-in spent {spent_us:,.0f} µs"
        " ({gunicorn_us:,.0f} in gunicorn), the trivial endpoint {trivial_us:,.0f} µs"
        " ({trivial_gunicorn_us:,.0f} in gunicorn), so a ratio of {ratio_goal:g} needs a"
        " check-in to spend at most {ratio_budget_us:,.0f} µs.".format(**budget)
    )
    if NO_WRITE in by:
        console.print(
            "Database write (check-in minus the no-write reference): {write_us:,.0f} µs of"
            " machine CPU per check-in ({write_gunicorn_us:,.0f} in gunicorn, {write_pg_us:,.0f}"
            " in PostgreSQL's backends); the rest of a check-in spent {rest_us:,.0f} µs and ran"
            " at {rest_rate:,.0f}/s, {rest_ratio:.2f} x the trivial endpoint (a ratio of 0.5"
            " allows {ratio_budget_us:,.0f} µs for everything).".format(
                **write_split(by["signed check-in"], by[NO_WRITE], trivial)
            )
        )
    console.print("Goals:")
    for c in checks:
        verdict = "[green]PASS[/green]" if c.passed else "[red]FAIL[/red]"
        console.print(f"  {verdict}  {c.goal}: {c.detail}")
    console.print(f"[dim]total {elapsed:.0f} s[/dim]")


# ------------------------------------------------------------ main


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; the exit status is 1 when a goal is missed or a request failed."""
    parser = argparse.ArgumentParser(
        description=(
            "Signed check-ins, conditional timestamp.json polls and a trivial Flask endpoint"
            f" against the production gunicorn command ({GUNICORN_WORKERS} workers) with"
            " PostgreSQL, all on loopback."
        )
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=DEFAULT_DURATION,
        help="measured seconds per scenario (default: %(default)s)",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=DEFAULT_WARMUP,
        help="unmeasured seconds before each window (default: %(default)s)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        help="requests kept in flight, in total (default: %(default)s)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=DEFAULT_PROCESSES,
        help="load generator processes sharing the concurrency (default: %(default)s)",
    )
    parser.add_argument(
        "--devices",
        type=int,
        default=DEFAULT_DEVICES,
        help="enrolled pumps checking in round robin (default: %(default)s)",
    )
    parser.add_argument(
        "--postgres",
        default=PG_MAINTENANCE,
        help="maintenance database URL; a fresh database is created next to it and dropped"
        " (default: $PUMPGUARD_TEST_POSTGRES or the local socket)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=GUNICORN_THREADS,
        help="gunicorn threads per worker, for every scenario; 1 is the sync worker"
        " (default: the production command's, %(default)s)",
    )
    parser.add_argument(
        "--db-setting",
        action="append",
        default=[],
        type=_db_setting,
        metavar="NAME=VALUE",
        help="a PostgreSQL setting for the benchmark database only (ALTER DATABASE ... SET),"
        " e.g. commit_delay=100; repeatable",
    )
    parser.add_argument(
        "--no-reference",
        dest="reference",
        action="store_false",
        help=f"skip the fourth scenario ({NO_WRITE!r}) that splits a check-in's cost",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = parser.parse_args(argv)
    if not 1 <= args.threads <= 64:
        parser.error("--threads must be 1 to 64")
    if args.duration <= 0 or args.warmup < 0 or args.duration + args.warmup > MAX_WINDOW:
        parser.error(f"need duration > 0, warmup >= 0 and duration + warmup <= {MAX_WINDOW:g}")
    if not 1 <= args.processes <= 64 or not args.processes <= args.concurrency <= 4096:
        parser.error("need 1 <= processes <= concurrency <= 4096 and processes <= 64")
    if not 1 <= args.devices <= 1_000_000:
        parser.error("--devices must be 1 to 1,000,000")

    def log(message: str) -> None:
        print(f"[server_load] {message}", file=sys.stderr, flush=True)

    # SIGTERM cleans up like Ctrl-C: gunicorn stopped, database dropped.
    def _terminate(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    started = time.perf_counter()
    os.environ[PASSPHRASE_ENV] = secrets.token_urlsafe(24)
    try:
        with contextlib.ExitStack() as stack_cm:
            work = Path(stack_cm.enter_context(tempfile.TemporaryDirectory(prefix="pg-load-")))
            db_url = stack_cm.enter_context(fresh_database(args.postgres, args.db_setting))
            log(f"building keys, repository, data folder and {args.devices:,} pumps ...")
            stack = build_stack(work, db_url, args.devices)
            # The server runs with the defaults, whatever this shell's PUMPGUARD_*.
            base_env = {
                k: v
                for k, v in os.environ.items()
                if k != "DATABASE_URL" and (k == PASSPHRASE_ENV or not k.startswith("PUMPGUARD_"))
            }
            info = collect_info(args, db_url)
            results = run_all(args, work, stack, base_env, log)
    except KeyboardInterrupt:
        log("interrupted; gunicorn stopped, database dropped")
        return 130
    elapsed = time.perf_counter() - started
    by = {r.name: r for r in results}
    checks = check_goals(by["signed check-in"], by["trivial endpoint"], results)
    if args.json:
        out = {
            **info,
            "goals": {
                "checkins_per_s": GOAL_CHECKINS,
                "checkin_p99_ms": GOAL_P99_MS,
                "checkin_over_trivial": GOAL_RATIO,
            },
            "scenarios": {r.name: r.to_json() for r in results},
            "ratios_to_trivial": {
                r.name: round(ratio(r.rate, by["trivial endpoint"].rate), 3)
                for r in results
                if r.name != "trivial endpoint"
            },
            "cpu_budget": {
                k: round(v, 1)
                for k, v in cpu_budget(
                    by["signed check-in"], by["trivial endpoint"], info["cpus"]
                ).items()
            },
            "write_split": (
                {
                    k: round(v, 3 if k == "rest_ratio" else 1)
                    for k, v in write_split(
                        by["signed check-in"], by[NO_WRITE], by["trivial endpoint"]
                    ).items()
                }
                if NO_WRITE in by
                else None
            ),
            "checks": [{"goal": c.goal, "pass": c.passed, "detail": c.detail} for c in checks],
            "elapsed_s": round(elapsed, 1),
        }
        print(json.dumps(out, indent=2))
    else:
        print_report(results, checks, info, elapsed)
    return 0 if all(c.passed for c in checks) else 1


def _db_setting(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.replace("_", "").isalnum() or not value:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, not {text!r}")
    return name, value


def collect_info(args: argparse.Namespace, db_url: str) -> dict[str, Any]:
    """The setting the figures depend on."""
    from importlib.metadata import version

    return {
        "command": f"{gunicorn_command(args.threads)} 'update_server.wsgi:app'",
        "worker_class": "gthread" if args.threads > 1 else "sync",
        "threads": args.threads,
        "db_settings": dict(args.db_setting),
        "gunicorn": version("gunicorn"),
        "postgres": pg_settings(db_url),
        "cpus": os.cpu_count() or 1,
        "devices": args.devices,
        "concurrency": args.concurrency,
        "processes": args.processes,
        "warmup": args.warmup,
        "duration": args.duration,
    }


def run_all(
    args: argparse.Namespace,
    work: Path,
    stack: Stack,
    base_env: dict[str, str],
    log: Callable[[str], None],
) -> list[Result]:
    """The scenarios: trivial endpoint first (its rate sizes the pre-signing)."""
    trivial_dir = work / "trivial"
    trivial_dir.mkdir()
    (trivial_dir / "bench_trivial_app.py").write_text(TRIVIAL_APP)
    results: list[Result] = []
    with gunicorn(
        "bench_trivial_app:app", trivial_dir, base_env, work / "trivial.log", "/ok", args.threads
    ) as server:
        status, _, body = _http(f"http://127.0.0.1:{server.port}/ok")
        if status != 200 or json.loads(body) != {"ok": True}:
            raise RuntimeError(f"trivial endpoint: HTTP {status} {body!r}")
        request = raw_request("GET", "/ok", server.port)
        jobs = static_jobs(args, server.port, request, b'"ok"')
        results.append(run_scenario("trivial endpoint", jobs, server, stack.database_url, log))
    trivial_rate = results[0].rate

    env = base_env | {
        "PUMPGUARD_DATA": str(stack.data_dir),
        "DATABASE_URL": stack.database_url,
        "PUMPGUARD_REFRESH_INTERVAL": "0",
    }
    with gunicorn(
        "update_server.wsgi:app",
        work,
        env,
        work / "server.log",
        "/tuf/metadata/timestamp.json",
        args.threads,
    ) as server:
        etag = preflight_timestamp(server.port)
        request = raw_request(
            "GET", "/tuf/metadata/timestamp.json", server.port, {"If-None-Match": etag}
        )
        jobs = static_jobs(args, server.port, request, b"")
        results.append(run_scenario("timestamp.json 304", jobs, server, stack.database_url, log))

        preflight_checkin(server.port, stack)
        # A check-in does all a trivial request does and more, so twice the
        # trivial rate (at least the goal) is more than can be used; running out
        # is reported as a failure, never papered over by reusing a nonce.
        rate = max(2 * trivial_rate, 1.5 * GOAL_CHECKINS)
        budget = int(rate * (args.warmup + args.duration + 1))
        log(f"signing {budget:,} check-ins (one nonce each) before the window ...")
        jobs = checkin_jobs(args, server.port, stack, budget)
        results.append(run_scenario("signed check-in", jobs, server, stack.database_url, log))
        if server.proc.poll() is not None:
            raise RuntimeError(f"gunicorn died during the run:\n{server.log_tail()}")
    ordered = [results[2], results[1], results[0]]
    if args.reference:
        ordered.insert(1, run_no_write(args, work, stack, env, budget, log))
    return ordered


def run_no_write(
    args: argparse.Namespace,
    work: Path,
    stack: Stack,
    env: dict[str, str],
    budget: int,
    log: Callable[[str], None],
) -> Result:
    """Signed check-ins against the app without the check-in's database write."""
    ref_dir = work / "no-write"
    ref_dir.mkdir()
    (ref_dir / "bench_no_write_app.py").write_text(NO_WRITE_APP)
    with gunicorn(
        "bench_no_write_app:app",
        ref_dir,
        env,
        work / "no-write.log",
        "/tuf/metadata/timestamp.json",
        args.threads,
    ) as server:
        preflight_checkin(server.port, stack)
        log(f"signing {budget:,} more check-ins for the reference ...")
        jobs = checkin_jobs(args, server.port, stack, budget)
        result = run_scenario(NO_WRITE, jobs, server, stack.database_url, log)
        if server.proc.poll() is not None:
            raise RuntimeError(f"gunicorn died during the run:\n{server.log_tail()}")
    return result


if __name__ == "__main__":
    sys.exit(main())
