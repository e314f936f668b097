"""`make demo` keeps working: the demo script runs end to end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_demo_runs_the_two_person_release_and_a_verified_pump_update(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PUMPGUARD_PASSPHRASE"}
    env["COLUMNS"] = "200"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py"), "--workdir", str(tmp_path / "demo")],
        capture_output=True, text=True, env=env, timeout=240, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "error: sigma-spectrum release is signed by 1 of the 2 required keys" in out
    assert "published sigma-spectrum 8.1.0 (counter 42), signed by 2 of 2" in out
    assert "bound to the firmware: yes" in out
    assert "demo complete" in out
    # The keys' passphrase is random per run and never printed.
    assert "PUMPGUARD_PASSPHRASE=" not in out
    assert (tmp_path / "demo/keys/re-carol.key").read_bytes().startswith(b"-----BEGIN ENCRYPTED")
