"""`make demo` keeps working: the demo script runs end to end."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_demo_updates_defers_and_rolls_back_simulated_pumps(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PUMPGUARD_PASSPHRASE"}
    env["COLUMNS"] = "200"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py"), "--workdir", str(tmp_path / "demo")],
        capture_output=True, text=True, env=env, timeout=240, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "(422): sigma-spectrum release is signed by 1 of the 2 required keys" in out
    assert "published sigma-spectrum 8.1.0 (counter 42) on http://127.0.0.1:" in out
    # pump-0001 updated; pump-0002 deferred during its infusion, then updated.
    assert "pump-0002: waiting-for-safe-window (infusion-running)" in out
    assert out.count("last update: 8.1.0 committed") == 2
    # pump-0003 rolled the failing 8.2.0 back and still runs 8.0.0.
    assert "pump-0003: idle\n  last update: 8.2.0 rolled-back (self-test-failed)" in out
    assert "pump-0003 event rolled-back     self-test-failed" in out
    # The reviewer: SBOM fetched through TUF, checked, audited offline, triaged.
    assert out.count("verified through TUF; it describes the published firmware") == 2
    assert "policy ntia passes" in out
    assert "FAIL [fda] openssl@3.0.13: end of support" in out
    assert "CRITICAL 9.1 CVE-2024-5535 in openssl@3.0.13: fixed in 3.0.15 [NEEDS TRIAGE]" in out
    assert "CVE-2024-0727" not in out  # fixed in 3.0.13: never reported
    assert "CVE-2024-2511 in openssl@3.0.13: fixed in 3.0.14 [not_affected]" in out
    assert "vulnerability fixed: CVE-2024-5535 in openssl@3.0.13" in out
    report = (tmp_path / "demo" / "audit-8.1.0.html").read_text()
    assert "CVE-2024-5535" in report
    assert "assurance-sigma-spectrum-8.1.0.zip: 30 files" in out
    assert (
        zipfile.ZipFile(tmp_path / "demo" / "assurance-sigma-spectrum-8.1.0.zip").testzip() is None
    )
    assert "audit chain intact: 9 entries" in out
    assert "demo complete" in out
    # Tokens live in files and reach commands through the environment only.
    for token_file in ("carol.token", "operator.token", "server/admin.token"):
        assert (tmp_path / "demo" / token_file).read_text().strip() not in out
    # The keys' passphrase is random per run and never printed.
    assert "PUMPGUARD_PASSPHRASE=" not in out
    assert (tmp_path / "demo/keys/re-carol.key").read_bytes().startswith(b"-----BEGIN ENCRYPTED")
