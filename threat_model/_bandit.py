"""Running bandit in a subprocess and reading its JSON report."""

from __future__ import annotations

import json

# Bandit B404: bandit runs as a subprocess with a fixed argument list, no shell.
import subprocess  # nosec B404
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from threat_model.errors import AssuranceError

__all__ = ["run_bandit"]

#: Bandit over the whole project takes seconds; this bounds a hang.
_TIMEOUT = 600


def run_bandit(python: str, files: Sequence[Path], cwd: Path) -> dict[str, Any]:
    """Run ``python -m bandit`` over ``files`` and return its JSON report.

    The files are listed explicitly (not ``-r``) so that bandit scans exactly
    the files the nosec register reads: bandit's own exclusion matches any
    path containing the excluded word, which would drop unrelated folders.

    Raises:
        AssuranceError: Bandit cannot run, fails, or writes no JSON.
    """
    argv = [python, "-m", "bandit", "--format", "json", "--quiet"]
    argv += [str(f.resolve()) for f in files]
    try:
        # Bandit B603: argv is this interpreter, fixed options and the file
        # names found by walking the tree; no shell.
        done = subprocess.run(  # nosec B603
            argv, cwd=cwd, capture_output=True, timeout=_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise AssuranceError(f"cannot run bandit: {e}") from e
    # 0: no finding, 1: findings; anything else is bandit failing.
    if done.returncode not in (0, 1):
        detail = done.stderr.decode("utf-8", "replace").strip()[-2000:]
        raise AssuranceError(f"bandit failed (exit {done.returncode}): {detail}")
    try:
        report = json.loads(done.stdout)
    except ValueError as e:
        raise AssuranceError(f"bandit wrote no JSON report: {e}") from e
    if not isinstance(report, dict) or not isinstance(report.get("results"), list):
        raise AssuranceError("bandit's JSON report has no results list")
    return report
