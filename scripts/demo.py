#!/usr/bin/env python3
"""The whole-system demo (`make demo`) on the embedded default.

It runs the real `pumpguard` commands a release team, an operator and three
simulated pumps would run, printing each: keys, an offline repository, the
update server on loopback (SQLite), a two-person release, then pumps that
update (one immediately, one only after its infusion ends) and a bad build that
fails its self-test and is rolled back automatically.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from rich.console import Console
from rich.table import Table
from tuf.ngclient import Updater

from pumpguard.device_auth import sign_request
from pumpguard.release import ReleaseInfo

console = Console(highlight=False)
FEEDS = Path(__file__).resolve().parent / "demo-feeds"

COMPONENTS = """\
[supplier]
name = "Acme Medical Devices"

[[component]]
name = "linux"
version = "6.1.90"
type = "operating-system"
supplier = "The Linux Foundation"
cpe = "cpe:2.3:o:linux:linux_kernel:6.1.90:*:*:*:*:*:*:*"
licenses = ["GPL-2.0-only"]
support_level = "supported"
end_of_support = 2027-12-31

[[component]]
name = "openssl"
version = "3.0.13"
supplier = "OpenSSL Software Foundation"
purl = "pkg:generic/openssl@3.0.13"
cpe = "cpe:2.3:a:openssl:openssl:3.0.13:*:*:*:*:*:*:*"
licenses = ["Apache-2.0"]
support_level = "supported"
end_of_support = 2026-09-07

[[component]]
name = "infusion-control"
version = "4.2.0"
supplier = "Acme Medical Devices"
purl = "pkg:generic/acme/infusion-control@4.2.0"
support_level = "supported"
end_of_support = 2031-12-31
licenses = ["LicenseRef-Acme-Proprietary"]
depends_on = ["openssl"]
"""


def step(title: str) -> None:
    console.rule(f"[bold cyan]{title}")


def pumpguard(*args: str | Path, expect_fail: bool = False, token: Path | None = None) -> str:
    """Run one real CLI command, echoing it as a person would type it.

    ``token`` names a token file whose secret is handed over in PUMPGUARD_TOKEN,
    as a person would export it; it is never echoed.
    """
    argv = [str(a) for a in args]
    prefix = f"PUMPGUARD_TOKEN=$(cat {token.name}) " if token else ""
    console.print(f"[bold]$ {prefix}pumpguard {shlex.join(argv)}")
    env = dict(os.environ)
    if token:
        env["PUMPGUARD_TOKEN"] = token.read_text().strip()
    proc = subprocess.run(
        [sys.executable, "-m", "pumpguard", *argv],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    out = (proc.stdout + proc.stderr).rstrip()
    if out:
        console.print(out, style="red" if proc.returncode else None, markup=False)
    if (proc.returncode != 0) != expect_fail:
        raise SystemExit(f"demo: 'pumpguard {shlex.join(argv)}' exited {proc.returncode}")
    if expect_fail:
        console.print(f"[yellow]refused as it must be (exit {proc.returncode})")
    return proc.stdout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def running_server(data: Path) -> Iterator[str]:
    """`pumpguard server run` on loopback, as its own process."""
    port = _free_port()
    console.print(f"[bold]$ pumpguard server run --data {data} --port {port} &")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pumpguard",
            "server",
            "run",
            "--data",
            str(data),
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/v1/openapi.json", timeout=2):  # noqa: S310
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("demo: the server did not start") from None
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _request(
    base: str,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(  # noqa: S310 - loopback URL built by this script
        base + path,
        data=data,
        method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310
        return json.loads(r.read())


def checkin(base: str, pump: Path, device_id: str) -> Any:
    """A pump's signed check-in (pumpguard.device_auth), reporting release 8.0.0."""
    key = serialization.load_pem_private_key(pump.with_suffix(".key").read_bytes(), None)
    assert isinstance(key, Ed25519PrivateKey)
    report = {
        "product": "sigma-spectrum",
        "hardware_id": "rev-b",
        "version": "8.0.0",
        "release_counter": 41,
        "slots": {
            "a": {"state": "active", "version": "8.0.0", "release_counter": 41},
            "b": {"state": "empty"},
        },
        "last_update": None,
        "therapy": {"state": "idle"},
    }
    body = json.dumps(report).encode()
    path = f"/api/v1/devices/{device_id}/checkin"
    headers = {
        "Content-Type": "application/json",
        **sign_request(key, device_id, "POST", path, body),
    }
    req = urllib.request.Request(base + path, data=body, method="POST", headers=headers)  # noqa: S310
    with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310
        return json.loads(r.read())


def tuf_fetch(
    base: str, root: bytes, pump_dir: Path, target: str
) -> tuple[ReleaseInfo, bytes, bytes]:
    """What a pump does with an assignment: verify and download it through TUF."""
    (pump_dir / "metadata").mkdir(parents=True, exist_ok=True)
    (pump_dir / "download").mkdir(exist_ok=True)
    updater = Updater(
        metadata_dir=str(pump_dir / "metadata"),
        metadata_base_url=f"{base}/tuf/metadata/",
        target_dir=str(pump_dir / "download"),
        target_base_url=f"{base}/tuf/targets/",
        bootstrap=root,
    )
    updater.refresh()
    info = updater.get_targetinfo(target)
    if info is None:
        raise SystemExit(f"demo: the pump did not find {target}")
    release = ReleaseInfo.from_custom(info.custom, info.path)
    firmware = Path(updater.download_target(info)).read_bytes()
    sbom_info = updater.get_targetinfo(release.sbom_path)
    if sbom_info is None:
        raise SystemExit("demo: the release has no SBOM")
    sbom = Path(updater.download_target(sbom_info)).read_bytes()
    return release, firmware, sbom


def run(work: Path) -> None:
    keys, repo, data = work / "keys", work / "repo", work / "server"
    # A fresh random passphrase for this run's keys; never printed.
    os.environ["PUMPGUARD_PASSPHRASE"] = secrets.token_urlsafe(24)

    step("1. Keys: two root holders, targets, online snapshot/timestamp, release engineer, QA")
    for name in (
        "root-alice",
        "root-bob",
        "targets",
        "snapshot",
        "timestamp",
        "re-carol",
        "qa-dave",
    ):
        pumpguard("keys", "generate", "--out", keys / name)

    step("2. Repository (offline): root threshold 2, consistent snapshots, one product line")
    pumpguard(
        "repo", "init", "--repo", repo,
        "--root-key", keys / "root-alice.pub", "--root-key", keys / "root-bob.pub",
        "--root-threshold", "2", "--targets-key", keys / "targets.pub",
        "--snapshot-key", keys / "snapshot.pub", "--timestamp-key", keys / "timestamp.pub",
        "--sign", keys / "root-alice.key", "--sign", keys / "root-bob.key",
        "--sign", keys / "targets.key", "--sign", keys / "snapshot.key",
        "--sign", keys / "timestamp.key",
    )  # fmt: skip
    online = ("--snapshot-key", keys / "snapshot.key", "--timestamp-key", keys / "timestamp.key")
    pumpguard(
        "repo", "add-product", "--repo", repo, "--product", "sigma-spectrum",
        "--key", keys / "re-carol.pub", "--key", keys / "qa-dave.pub", "--threshold", "2",
        "--sign", keys / "targets.key", *online,
    )  # fmt: skip

    step("3. Update server on loopback (SQLite), holding only the online keys")
    pumpguard("server", "init", "--data", data, "--repo", repo, *online)
    carol, operator = work / "carol.token", work / "operator.token"
    pumpguard(
        "server", "token", "create", "--data", data, "--name", "carol",
        "--role", "release-engineer", "--product", "sigma-spectrum", "--out", carol,
    )  # fmt: skip
    pumpguard(
        "server",
        "token",
        "create",
        "--data",
        data,
        "--name",
        "ops",
        "--role",
        "operator",
        "--out",
        operator,
    )

    with running_server(data) as base:
        step("4. A release: firmware + CycloneDX SBOM + unsigned product metadata")
        firmware = work / "sigma-spectrum-8.1.0.img"
        pumpguard(
            "agent", "simulate", "firmware", "--version", "8.1.0", "--out", firmware,
            "--size", str(2 << 20),
        )  # fmt: skip
        components = work / "components.toml"
        components.write_text(COMPONENTS)
        bundle = work / "sigma-spectrum-8.1.0.tar"
        pumpguard(
            "release", "create", "--repo", data / "repo", "--product", "sigma-spectrum",
            "--version", "8.1.0", "--release-counter", "42", "--hardware-id", "rev-b",
            "--hardware-id", "rev-c", "--firmware", firmware, "--components", components,
            "--supplier", "Acme Medical Devices",
            "--notes", "Fixes occlusion alarm latency (CAPA-1187)", "--out", bundle, "--tar",
        )  # fmt: skip

        step("5. Two-person rule: the server refuses one signature")
        pumpguard("release", "sign", bundle, "--key", keys / "re-carol.key")
        pumpguard("release", "publish", bundle, "--server", base, expect_fail=True, token=carol)
        console.print("[dim](QA signs on another machine, with only the bundle and their key)")
        pumpguard("release", "sign", bundle, "--key", keys / "qa-dave.key")
        pumpguard("release", "verify", bundle, "--repo", data / "repo")
        pumpguard("release", "publish", bundle, "--server", base, token=carol)

        step("6. Pumps: three simulated pumps on 8.0.0 (counter 41), enrolled by an operator")
        pumps = work / "pumps"
        for n in (1, 2, 3):
            device_id = f"pump-{n:04d}"
            pumpguard(
                "agent", "simulate", "init", "--dir", pumps / device_id, "--server", base,
                "--root", repo / "metadata" / "1.root.json", "--device-id", device_id,
                "--product", "sigma-spectrum", "--hardware-id", "rev-b",
                "--factory-version", "8.0.0", "--factory-counter", "41",
            )  # fmt: skip
            pumpguard(
                "device", "enroll", "--server", base, "--device-id", device_id,
                "--hardware-id", "rev-b", "--product", "sigma-spectrum",
                "--public-key", pumps / device_id / "device.pub", token=operator,
            )  # fmt: skip

        step("7. pump-0001 updates: verify with TUF, stream into slot b, reboot, self-test, commit")
        pumpguard("agent", "simulate", "run", "--dir", pumps / "pump-0001")

        step("8. pump-0002 is infusing: the update downloads but waits for the infusion to end")
        pumpguard("agent", "simulate", "therapy", "--dir", pumps / "pump-0002", "running")
        pumpguard("agent", "simulate", "run", "--dir", pumps / "pump-0002", "--wait-timeout", "1")
        console.print("[dim](the nurse stops the infusion)")
        pumpguard("agent", "simulate", "therapy", "--dir", pumps / "pump-0002", "idle")
        pumpguard("agent", "simulate", "run", "--dir", pumps / "pump-0002")

        step("9. A bad build 8.2.0 is signed and published; its self-test fails on pump-0003")
        bad = work / "sigma-spectrum-8.2.0.img"
        pumpguard(
            "agent", "simulate", "firmware", "--version", "8.2.0", "--out", bad,
            "--behaviour", "selftest-fail", "--size", str(2 << 20),
        )  # fmt: skip
        # 8.2.0 also moves OpenSSL to 3.0.15 (the reviewer's diff shows it).
        components_82 = work / "components-8.2.0.toml"
        components_82.write_text(COMPONENTS.replace("3.0.13", "3.0.15"))
        bad_bundle = work / "sigma-spectrum-8.2.0.tar"
        pumpguard(
            "release", "create", "--repo", data / "repo", "--product", "sigma-spectrum",
            "--version", "8.2.0", "--release-counter", "43", "--hardware-id", "rev-b",
            "--firmware", bad, "--components", components_82,
            "--supplier", "Acme Medical Devices",
            "--notes", "Faster boot", "--out", bad_bundle, "--tar",
        )  # fmt: skip
        pumpguard("release", "sign", bad_bundle, "--key", keys / "re-carol.key")
        pumpguard("release", "sign", bad_bundle, "--key", keys / "qa-dave.key")
        pumpguard("release", "publish", bad_bundle, "--server", base, token=carol)
        pumpguard("agent", "simulate", "run", "--dir", pumps / "pump-0003")

        step("10. The fleet, as an operator sees it")
        auth = {"Authorization": f"Bearer {operator.read_text().strip()}"}
        fleet = _request(base, "GET", "/api/v1/devices", headers=auth)
        table = Table("device", "runs", "counter", "agent", "last update", "assigned")
        for d in fleet["devices"]:
            status = d.get("status") or {}
            last = status.get("last_update") or {}
            outcome = f"{last.get('version', '')} {last.get('result', '')}".strip() or "-"
            table.add_row(
                d["device_id"], str(d["version"]), str(d["release_counter"]),
                str(status.get("agent_state", "-")), outcome, str(d["assigned_version"]),
            )  # fmt: skip
        console.print(table)
        for r in _request(base, "GET", "/api/v1/releases", headers=auth)["releases"]:
            console.print(
                f"release {r['product']} {r['version']} (counter {r['release_counter']}) "
                f"signed by {len(r['signed_by'])}, published by {r['published_by']}"
            )
        events = _request(base, "GET", "/api/v1/devices/pump-0003/events", headers=auth)
        for e in reversed(events["events"]):
            detail = e.get("detail") or {}
            why = detail.get("reason") or ""
            console.print(f"pump-0003 event {e['kind']:<15} {why}")

        step("11. A reviewer: the SBOM through TUF, its NTIA/FDA check, an offline audit")
        sbom_81, sbom_82 = work / "sbom-8.1.0.cdx.json", work / "sbom-8.2.0.cdx.json"
        root_file = repo / "metadata" / "1.root.json"
        for version, out in (("8.1.0", sbom_81), ("8.2.0", sbom_82)):
            pumpguard(
                "sbom", "verify", "--server", base, "--release", f"sigma-spectrum/{version}",
                "--root", root_file, "--out", out,
            )  # fmt: skip
    vulndb = work / "vulndb.sqlite"
    pumpguard("sbom", "check", sbom_81, "--policy", "ntia")
    console.print("[dim](the FDA policy also wants every component supported: OpenSSL 3.0 is not)")
    pumpguard("sbom", "check", sbom_81, "--policy", "fda", expect_fail=True)
    pumpguard("vulndb", "import", FEEDS / "nvdcve-2.0-openssl-excerpt.json", "--db", vulndb)
    pumpguard("sbom", "audit", sbom_81, "--db", vulndb)
    pumpguard(
        "sbom", "vex", "record", sbom_81, "--db", vulndb, "--vuln", "CVE-2024-2511",
        "--component", "pkg:generic/openssl@3.0.13", "--state", "not_affected",
        "--justification", "code_not_reachable", "--author", "erin (security review)",
        "--detail", "the pump never runs a TLS server; the affected session cache is server-side",
    )  # fmt: skip
    report = work / "audit-8.1.0.html"
    pumpguard("sbom", "audit", sbom_81, "--db", vulndb, "--html", report)
    console.print(f"[dim](reviewer report: {report})")
    pumpguard("sbom", "diff", sbom_81, sbom_82, "--db", vulndb)

    step("12. The premarket assurance package for 8.1.0: SBOM, audit, VEX, threat model, SAST")
    package = work / "assurance-sigma-spectrum-8.1.0.zip"
    pumpguard(
        "assurance", "build", "--release", "sigma-spectrum/8.1.0", "--repo", data / "repo",
        "--root", repo / "metadata" / "1.root.json", "--db", vulndb, "--out", package,
    )  # fmt: skip

    step("13. Audit chain and repository status")
    pumpguard("server", "audit", "verify", "--data", data)
    pumpguard("repo", "status", "--repo", data / "repo")
    console.print(
        "[bold green]demo complete[/]: two-person releases published through the server; "
        "pumps updated, one deferred during an infusion, a failing build rolled back"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workdir", type=Path, help="Keep the demo's files here (default: a temporary folder)."
    )
    args = parser.parse_args()
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=False)
        run(args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="pumpguard-demo-") as tmp:
            run(Path(tmp))


if __name__ == "__main__":
    main()
