"""CVSS base scores and qualitative severity ratings.

OSV records carry a CVSS vector but no score; NVD records carry both. The
CVSS 3.x base score is a fixed formula of the vector (CVSS v3.1 specification,
section 7), so it is computed here rather than left blank. CVSS 4.0 scores come
from a large lookup table and are not computed: a v4 vector without a score is
reported with its vector and an unknown score.
"""

from __future__ import annotations

import math

__all__ = ["base_score_v3", "rating"]

_WEIGHTS: dict[str, dict[str, float]] = {
    "AV": {"N": 0.85, "A": 0.62, "L": 0.55, "P": 0.2},
    "AC": {"L": 0.77, "H": 0.44},
    "UI": {"N": 0.85, "R": 0.62},
    "C": {"H": 0.56, "L": 0.22, "N": 0.0},
    "I": {"H": 0.56, "L": 0.22, "N": 0.0},
    "A": {"H": 0.56, "L": 0.22, "N": 0.0},
}
# Privileges required weigh more when the scope changes.
_PR = {"U": {"N": 0.85, "L": 0.62, "H": 0.27}, "C": {"N": 0.85, "L": 0.68, "H": 0.5}}


def _roundup(value: float) -> float:
    # CVSS v3.1 Appendix A: round up to one decimal, robust to float error.
    scaled = round(value * 100_000)
    if scaled % 10_000 == 0:
        return scaled / 100_000
    return (math.floor(scaled / 10_000) + 1) / 10.0


def base_score_v3(vector: str) -> float | None:
    """The CVSS 3.0/3.1 base score of a vector string.

    Args:
        vector: e.g. ``CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H``.

    Returns:
        The base score (0.0 to 10.0), or ``None`` if ``vector`` is not a
        complete CVSS 3.x base vector.
    """
    parts = vector.strip().split("/")
    if not parts or parts[0] not in ("CVSS:3.0", "CVSS:3.1"):
        return None
    metrics: dict[str, str] = {}
    for part in parts[1:]:
        name, colon, value = part.partition(":")
        if not colon or name in metrics:
            return None
        metrics[name] = value
    try:
        scope = metrics["S"]
        pr = _PR[scope][metrics["PR"]]
        w = {name: _WEIGHTS[name][metrics[name]] for name in _WEIGHTS}
    except KeyError:
        return None
    iss = 1 - (1 - w["C"]) * (1 - w["I"]) * (1 - w["A"])
    changed = 7.52 * (iss - 0.029) - 3.25 * (iss - 0.02) ** 15
    impact = 6.42 * iss if scope == "U" else changed
    exploitability = 8.22 * w["AV"] * w["AC"] * pr * w["UI"]
    if impact <= 0:
        return 0.0
    if scope == "U":
        return _roundup(min(impact + exploitability, 10))
    return _roundup(min(1.08 * (impact + exploitability), 10))


def rating(score: float | None) -> str:
    """The qualitative severity of a CVSS score (CVSS v3.1 section 5).

    Returns:
        ``critical``, ``high``, ``medium``, ``low``, ``none``, or ``unknown``
        when there is no score.
    """
    if score is None:
        return "unknown"
    if score >= 9.0:
        return "critical"
    if score >= 7.0:
        return "high"
    if score >= 4.0:
        return "medium"
    if score > 0.0:
        return "low"
    return "none"
