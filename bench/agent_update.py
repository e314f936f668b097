#!/usr/bin/env python3
"""A pump's firmware download: the agent against python-tuf and shell tools.

Serves a signed release of a large firmware image (256 MiB by default) over
HTTP on loopback and measures, interleaved (a, b, c, a, b, c ...), the time from
an empty TUF cache to a verified, fsynced inactive slot:

(a) the agent itself (``device_agent.Agent``, its state machine from idle):
    a signed check-in with the real update server (which assigns the release),
    TUF refresh and lookup, the policy checks, and the one-pass download (hash
    and write into the slot, fsync), until the persisted state is ``verified``;
(b) python-tuf alone: ``Updater.refresh``, ``download_target`` into a cache
    folder, then a copy into the slot and an fsync;
(c) the single-pass limit: ``curl -s URL | tee SLOT | sha256sum``, then
    ``sync SLOT``.

(a) and (b) run in child processes and time themselves from before the refresh
to after the fsync; (c) is timed around the shell pipeline. The agent's child
also reports its peak RSS (``VmHWM``). Goals (device-agent issue): (a)/(c) <=
1.25, (a)/(b) <= 0.8, agent peak RSS <= 64 MiB at every size. The exit status
is 1 when a goal is missed. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench_repo import make_repo

PRODUCT = "sigma-spectrum"
VERSION = "1.0.0"
PASSPHRASE_ENV = "PUMPGUARD_PASSPHRASE"
MIB = 1024 * 1024
GOAL_VS_SHELL = 1.25
GOAL_VS_TUF = 0.8
GOAL_RSS_MIB = 64.0


# ------------------------------------------------------------------ server
class _Handler(http.server.BaseHTTPRequestHandler):
    """Static files with Range, sent with sendfile: the same for a, b and c."""

    protocol_version = "HTTP/1.1"
    root = Path(".")

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        path = (self.root / self.path.split("?")[0].lstrip("/")).resolve()
        if not path.is_relative_to(self.root) or not path.is_file():
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        size = path.stat().st_size
        start = 0
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes=") and rng.endswith("-"):
            start = min(int(rng[6:-1]), size)
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        self.send_header("Content-Length", str(size - start))
        self.end_headers()
        with path.open("rb") as f:
            if size - start:
                self.connection.sendfile(f, start, size - start)


def serve(root: Path) -> None:
    """Child process: serve ``root`` on loopback, print the port."""
    _Handler.root = root.resolve()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    print(httpd.server_address[1], flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    httpd.serve_forever()


# ------------------------------------------------------------------ setup
def build_repo(work: Path, size_mib: int) -> str:
    """Keys, a repository and one signed release; returns the firmware path."""
    bench = make_repo(work, PRODUCT, PASSPHRASE_ENV)
    repo_path = bench.path
    firmware = work / "firmware.img"
    # Random content (incompressible, no dedup anywhere), 1 MiB repeated with
    # a counter so that each MiB differs.
    block = os.urandom(MIB)
    with firmware.open("wb") as f:
        for i in range(size_mib):
            f.write(i.to_bytes(8, "big") + block[8:])
    bench.publish(VERSION, 1, firmware)
    # The published copy under targets/ is all that is needed from here on.
    shutil.rmtree(work / f"bundle-{VERSION}")
    firmware.unlink()
    (served,) = (repo_path / "targets" / PRODUCT / VERSION).glob("*.firmware.img")
    return str(served.relative_to(repo_path))


# ------------------------------------------------------------------ children
def _vm_hwm_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def child_agent(args: dict[str, Any]) -> dict[str, Any]:
    """(a) The agent, from idle to a verified, fsynced slot (state ``verified``)."""
    from device_agent.agent import Agent
    from device_agent.config import load_config
    from device_agent.state import AgentState

    agent = Agent(load_config(Path(args["config"])))
    start = time.perf_counter()
    for _ in range(20):
        agent.step()
        state = agent.store.load().state
        if state is AgentState.VERIFIED:
            break
    else:
        raise SystemExit(f"the agent stopped in {state}, not verified")
    elapsed = time.perf_counter() - start
    return {"seconds": elapsed, "vm_hwm_kib": _vm_hwm_kib()}


def make_pump(directory: Path, server: str, files: str, root: Path, key: bytes) -> Path:
    """A simulated pump whose TUF files come from ``files`` (a CDN) and check-ins
    go to ``server``; returns its config file."""
    from device_agent.simulator import SimulatedPump

    pump = SimulatedPump.create(
        directory,
        server_url=server,
        root=root.read_bytes(),
        device_id="pump-bench",
        product=PRODUCT,
        hardware_id="rev-b",
        key_pem=key,
        factory_version="0.9.0",
        factory_counter=0,
    )
    text = pump.config_path.read_text().replace(
        "timeout = 10\n",
        f'timeout = 10\nmetadata_url = "{files}/metadata"\ntargets_url = "{files}/targets"\n',
    )
    pump.config_path.write_text(text)
    return pump.config_path


@contextlib.contextmanager
def update_server(work: Path) -> Iterator[tuple[str, bytes]]:
    """The real update server on loopback (``pumpguard server run``), holding the
    bench repository, with one enrolled pump; yields its URL and the pump's key."""
    import urllib.request

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from update_server.datadir import init_data_dir

    data = work / "server"
    _, admin = init_data_dir(
        data,
        repo=work / "repo",
        snapshot_key=str(work / "keys" / "snapshot.key"),
        timestamp_key=str(work / "keys" / "timestamp.key"),
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "pumpguard", "server", "run", "--data", str(data),
         "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                urllib.request.urlopen(f"{base}/api/v1/openapi.json", timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        key = Ed25519PrivateKey.generate()
        body = json.dumps(
            {
                "device_id": "pump-bench",
                "hardware_id": "rev-b",
                "product": PRODUCT,
                "public_key": key.public_key().public_bytes_raw().hex(),
            }
        ).encode()
        request = urllib.request.Request(
            f"{base}/api/v1/devices",
            data=body,
            method="POST",
            headers={"Authorization": f"Bearer {admin}", "Content-Type": "application/json"},
        )
        urllib.request.urlopen(request, timeout=10).close()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        yield base, pem
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def child_tuf(args: dict[str, Any]) -> dict[str, Any]:
    """(b) python-tuf alone: download_target into a cache, copy, fsync."""
    from tuf.ngclient import Updater

    root = Path(args["root"]).read_bytes()
    cache = Path(args["cache"])
    start = time.perf_counter()
    updater = Updater(
        metadata_dir=args["meta"],
        metadata_base_url=f"{args['url']}/metadata/",
        target_dir=str(cache),
        target_base_url=f"{args['url']}/targets/",
        bootstrap=root,
    )
    updater.refresh()
    info = updater.get_targetinfo(f"{PRODUCT}/{VERSION}/firmware.img")
    if info is None:
        raise SystemExit("target not found")
    downloaded = updater.download_target(info)
    with open(downloaded, "rb") as src, open(args["slot"], "wb") as dst:
        shutil.copyfileobj(src, dst, MIB)
        dst.flush()
        os.fsync(dst.fileno())
    elapsed = time.perf_counter() - start
    return {"seconds": elapsed, "vm_hwm_kib": _vm_hwm_kib()}


def _run_child(mode: str, args: dict[str, Any]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, json.dumps(args)],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def shell_pipeline(url: str, slot: Path) -> float:
    """(c) curl | tee SLOT | sha256sum, then sync SLOT."""
    start = time.perf_counter()
    subprocess.run(
        f"curl -sf '{url}' | tee '{slot}' | sha256sum > /dev/null && sync '{slot}'",
        shell=True,
        check=True,
        executable="/bin/bash",
    )
    return time.perf_counter() - start


# ------------------------------------------------------------------ driver
@contextlib.contextmanager
def running_server(root: Path) -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(root)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def bench_size(size_mib: int, rounds: int, workdir: Path | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="pumpguard-agent-bench-", dir=workdir) as tmp:
        work = Path(tmp)
        print(f"  building a repository with a {size_mib} MiB firmware ...", flush=True)
        fw_rel = build_repo(work, size_mib)
        root_file = work / "repo" / "metadata" / "1.root.json"
        times: dict[str, list[float]] = {"a": [], "b": [], "c": []}
        rss: list[int] = []
        with running_server(work / "repo") as url, update_server(work) as (server, key):
            for rnd in range(rounds):
                for kind in ("a", "b", "c"):
                    run_dir = work / f"run-{kind}"
                    shutil.rmtree(run_dir, ignore_errors=True)
                    run_dir.mkdir()
                    slot = run_dir / "slot-b"
                    if kind == "a":
                        config = make_pump(run_dir / "pump", server, url, root_file, key)
                        slot = run_dir / "pump" / "slots" / "b.img"
                    args = {
                        "config": str(config) if kind == "a" else "",
                        "url": url,
                        "root": str(root_file),
                        "meta": str(run_dir / "tuf"),
                        "cache": str(run_dir / "cache"),
                        "slot": str(slot),
                    }
                    if kind == "a":
                        result = _run_child("agent", args)
                        rss.append(result["vm_hwm_kib"])
                        seconds = result["seconds"]
                    elif kind == "b":
                        (run_dir / "tuf").mkdir()
                        seconds = _run_child("tuf", args)["seconds"]
                    else:
                        seconds = shell_pipeline(f"{url}/{fw_rel}", slot)
                    if slot.stat().st_size != size_mib * MIB:
                        raise SystemExit(f"({kind}) wrote {slot.stat().st_size} bytes")
                    times[kind].append(seconds)
                    shutil.rmtree(run_dir)
                print(
                    f"  round {rnd + 1}: a {times['a'][-1]:.2f} s, b {times['b'][-1]:.2f} s, "
                    f"c {times['c'][-1]:.2f} s, agent peak RSS {rss[-1] / 1024:.1f} MiB",
                    flush=True,
                )
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "size_mib": size_mib,
        "rounds": rounds,
        "seconds": times,
        "median": med,
        "a_over_c": med["a"] / med["c"],
        "a_over_b": med["a"] / med["b"],
        "agent_peak_rss_mib": max(rss) / 1024,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, help="one firmware size in MiB (default 256)")
    parser.add_argument("--sizes", default=None, help="comma-separated sizes in MiB, e.g. 256,1024")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--workdir", type=Path, help="where the temporary folder goes")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.serve:
        serve(Path(ns.serve))
        return 0
    if ns.child:
        mode, raw = ns.child
        run = child_agent if mode == "agent" else child_tuf
        print(json.dumps(run(json.loads(raw))))
        return 0
    if shutil.which("curl") is None:
        raise SystemExit("curl is needed for the shell reference (c)")
    os.environ.setdefault(PASSPHRASE_ENV, "bench-passphrase-not-secret")
    sizes = [int(s) for s in ns.sizes.split(",")] if ns.sizes else [ns.size_mib or 256]
    results = []
    for size in sizes:
        print(f"{size} MiB firmware, {ns.rounds} interleaved rounds", flush=True)
        results.append(bench_size(size, ns.rounds, ns.workdir))
    ok = True
    print()
    header = (
        f"{'size':>8} {'(a) agent':>10} {'(b) tuf':>9} {'(c) shell':>10} "
        f"{'a/c':>6} {'a/b':>6} {'agent RSS':>10}"
    )
    print(header)
    for r in results:
        m = r["median"]
        print(
            f"{r['size_mib']:>4} MiB {m['a']:>8.2f} s {m['b']:>7.2f} s {m['c']:>8.2f} s "
            f"{r['a_over_c']:>6.2f} {r['a_over_b']:>6.2f} {r['agent_peak_rss_mib']:>6.1f} MiB"
        )
    for r in results:
        checks = [
            ("(a)/(c)", r["a_over_c"], GOAL_VS_SHELL),
            ("(a)/(b)", r["a_over_b"], GOAL_VS_TUF),
            ("agent peak RSS MiB", r["agent_peak_rss_mib"], GOAL_RSS_MIB),
        ]
        for name, value, goal in checks:
            passed = value <= goal
            ok &= passed
            verdict = "PASS" if passed else "FAIL"
            print(f"{verdict} {r['size_mib']} MiB {name} = {value:.2f} (goal <= {goal})")
    rss = [r["agent_peak_rss_mib"] for r in results]
    if len(rss) > 1:
        # "The same for 1 GiB as for 256 MiB": flat within 4 MiB.
        flat = max(rss) - min(rss) <= 4.0
        ok &= flat
        print(
            f"{'PASS' if flat else 'FAIL'} agent peak RSS flat across sizes "
            f"({min(rss):.1f}-{max(rss):.1f} MiB)"
        )
    if ns.json:
        print(json.dumps(results, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
