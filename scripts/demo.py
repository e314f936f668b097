#!/usr/bin/env python3
"""The whole-system demo (`make demo`) on the embedded default.

It runs the real `pumpguard` commands a release team would type, printing each,
then plays a pump: a python-tuf client that ships only root v1 fetches the new
firmware over loopback HTTP and verifies it. Later issues extend it with the
update server, the device agent and the SBOM audit.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import secrets
import shlex
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from rich.console import Console
from rich.panel import Panel
from tuf.ngclient import Updater

from pumpguard.release import ReleaseInfo
from sbom import bound_firmware_sha256

console = Console(highlight=False)

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
licenses = ["Apache-2.0"]
support_level = "supported"
end_of_support = 2026-09-07

[[component]]
name = "infusion-control"
version = "4.2.0"
supplier = "Acme Medical Devices"
licenses = ["LicenseRef-Acme-Proprietary"]
depends_on = ["openssl"]
"""


def step(title: str) -> None:
    console.rule(f"[bold cyan]{title}")


def pumpguard(*args: str | Path, expect_fail: bool = False) -> str:
    """Run one real CLI command, echoing it as a person would type it."""
    argv = [str(a) for a in args]
    console.print(f"[bold]$ pumpguard {shlex.join(argv)}")
    proc = subprocess.run(
        [sys.executable, "-m", "pumpguard", *argv], capture_output=True, text=True, check=False
    )
    out = (proc.stdout + proc.stderr).rstrip()
    if out:
        console.print(out, style="red" if proc.returncode else None, markup=False)
    if (proc.returncode != 0) != expect_fail:
        raise SystemExit(f"demo: 'pumpguard {shlex.join(argv)}' exited {proc.returncode}")
    if expect_fail:
        console.print(f"[yellow]refused as it must be (exit {proc.returncode})")
    return proc.stdout


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def static_server(root: Path) -> Iterator[str]:
    """Serve the published repository as plain static files on loopback."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def run(work: Path) -> None:
    keys, repo = work / "keys", work / "repo"
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

    step("2. Repository: root threshold 2, consistent snapshots, one product line")
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

    step("3. A release: firmware + CycloneDX SBOM + unsigned product metadata")
    firmware = work / "sigma-spectrum-8.1.0.img"
    firmware.write_bytes(b"PUMPGUARD-FIRMWARE sigma-spectrum 8.1.0\n" + os.urandom(2 << 20))
    components = work / "components.toml"
    components.write_text(COMPONENTS)
    bundle = work / "sigma-spectrum-8.1.0.tar"
    pumpguard(
        "release", "create", "--repo", repo, "--product", "sigma-spectrum", "--version", "8.1.0",
        "--release-counter", "42", "--hardware-id", "rev-b", "--hardware-id", "rev-c",
        "--firmware", firmware, "--components", components, "--supplier", "Acme Medical Devices",
        "--notes", "Fixes occlusion alarm latency (CAPA-1187)", "--out", bundle, "--tar",
    )  # fmt: skip

    step("4. Two-person rule: one signature is not enough")
    pumpguard("release", "sign", bundle, "--key", keys / "re-carol.key")
    pumpguard("release", "publish", bundle, "--repo", repo, *online, expect_fail=True)
    console.print("[dim](QA signs on another machine, with only the bundle and their key)")
    pumpguard("release", "sign", bundle, "--key", keys / "qa-dave.key")
    pumpguard("release", "verify", bundle, "--repo", repo)
    pumpguard("release", "publish", bundle, "--repo", repo, *online)

    step("5. A pump verifies it with a real TUF client, trusting only its built-in root v1")
    with static_server(repo) as base:
        pump = work / "pump"
        (pump / "metadata").mkdir(parents=True)
        (pump / "download").mkdir()
        updater = Updater(
            metadata_dir=str(pump / "metadata"),
            metadata_base_url=f"{base}/metadata/",
            target_dir=str(pump / "download"),
            target_base_url=f"{base}/targets/",
            bootstrap=(repo / "metadata" / "1.root.json").read_bytes(),
        )
        updater.refresh()
        info = updater.get_targetinfo("sigma-spectrum/8.1.0/firmware.img")
        if info is None:
            raise SystemExit("demo: the pump did not find the release")
        release = ReleaseInfo.from_custom(info.custom, info.path)
        fw_bytes = Path(updater.download_target(info)).read_bytes()
        sbom_info = updater.get_targetinfo(release.sbom_path)
        assert sbom_info is not None
        sbom = Path(updater.download_target(sbom_info)).read_bytes()
    fw_sha = hashlib.sha256(fw_bytes).hexdigest()
    bound = bound_firmware_sha256(sbom) == fw_sha
    console.print(
        Panel.fit(
            f"release        {release.product} {release.version}\n"
            f"counter        {release.release_counter} (anti-rollback)\n"
            f"hardware       {', '.join(release.hardware_ids)}\n"
            f"notes          {release.notes}\n"
            f"firmware       {len(fw_bytes):,} bytes, sha256 {fw_sha[:16]}... verified\n"
            f"SBOM           {len(sbom):,} bytes, "
            f"bound to the firmware: {'yes' if bound else 'NO'}",
            title="pump: verified update",
        )
    )
    if not bound or fw_bytes != firmware.read_bytes():
        raise SystemExit("demo: the pump received something other than what was signed")

    step("6. Repository status")
    pumpguard("repo", "status", "--repo", repo)
    console.print(
        "[bold green]demo complete[/]: keys, repository, two-person release, "
        "verified by a TUF client"
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
