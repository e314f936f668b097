"""Writing Graphviz DOT and rendering it to SVG with the real ``dot`` tool."""

from __future__ import annotations

import shutil

# Bandit B404: dot is run once per diagram with a fixed argument list, no shell.
import subprocess  # nosec B404
from collections.abc import Mapping

from threat_model.errors import AssuranceError

__all__ = ["attrs", "find_dot", "quote", "render_svg"]

#: Longest a diagram may take to lay out (the model is small; this bounds a bug).
_TIMEOUT = 120


def quote(text: str) -> str:
    """``text`` as a DOT double-quoted string; newlines become centred line breaks."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\r", "").replace("\n", "\\n") + '"'


def attrs(values: Mapping[str, str]) -> str:
    """A DOT attribute list, ``[k="v", ...]``, keys sorted so the output is stable."""
    inner = ", ".join(f"{k}={quote(v)}" for k, v in sorted(values.items()))
    return f"[{inner}]"


def find_dot() -> str:
    """The path of Graphviz's ``dot``.

    Raises:
        AssuranceError: It is not installed.
    """
    path = shutil.which("dot")
    if path is None:
        raise AssuranceError(
            "Graphviz 'dot' is not on PATH; install the graphviz package to render diagrams"
        )
    return path


def render_svg(source: str, name: str) -> bytes:
    """Lay out DOT ``source`` as SVG.

    Args:
        source: The DOT graph.
        name: The diagram's file name, for error messages.

    Raises:
        AssuranceError: ``dot`` is missing, fails or times out.
    """
    argv = [find_dot(), "-Tsvg"]
    try:
        # Bandit B603: a fixed argv (dot's own path and one option), no shell;
        # the graph goes in on stdin.
        done = subprocess.run(  # nosec B603
            argv,
            input=source.encode("utf-8"),
            capture_output=True,
            timeout=_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise AssuranceError(f"cannot render {name} with {argv[0]}: {e}") from e
    if done.returncode != 0:
        detail = done.stderr.decode("utf-8", "replace").strip()
        raise AssuranceError(f"dot failed to render {name}: {detail}")
    return done.stdout
