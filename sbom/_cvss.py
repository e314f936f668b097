"""CVSS base scores and qualitative severity ratings.

OSV records carry a CVSS vector but no score; NVD records carry both. The score
of a CVSS 3.0, 3.1 or 4.0 vector is computed with the maintained ``cvss``
package (Red Hat Product Security), so that an OSV record carrying only a CVSS
4.0 vector is rated like any other. Before it, pumpguard hand-wrote the CVSS
v3.1 formula (specification section 7); the package gives the same score for
all 5,184 CVSS 3.0 and 3.1 base vectors. CVSS 2.0 vectors are not scored: their
scores do not fit the v3/v4 severity bands.
"""

from __future__ import annotations

from cvss import CVSS3, CVSS4, CVSSError

__all__ = ["base_score", "rating"]


def base_score(vector: str) -> float | None:
    """The score of a CVSS 3.0, 3.1 or 4.0 vector string.

    Args:
        vector: e.g. ``CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H`` or
            ``CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N``.

    Returns:
        The base score (0.0 to 10.0; for CVSS 4.0 the score of the metrics the
        vector gives, CVSS-B, -BT or -BTE), or ``None`` if ``vector`` is not a
        complete, valid CVSS 3.x or 4.0 vector.
    """
    text = vector.strip()
    calculator: type[CVSS3] | type[CVSS4]
    if text.startswith(("CVSS:3.0/", "CVSS:3.1/")):
        calculator = CVSS3
    elif text.startswith("CVSS:4.0/"):
        calculator = CVSS4
    else:
        return None
    try:
        score = calculator(text).base_score
    # The package raises CVSSError subclasses for bad vectors; guard against
    # anything else on hostile feed input too: no score is the safe answer.
    except (CVSSError, ValueError, KeyError, TypeError, IndexError):
        return None
    return float(score)


def rating(score: float | None) -> str:
    """The qualitative severity of a CVSS score (CVSS v3.1 section 5; v4.0 uses the same bands).

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
