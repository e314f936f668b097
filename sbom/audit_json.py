"""The SBOM audit as one JSON document, for ``sbom audit --json`` and the assurance package.

Both outputs describe the same audit, so they are built here, once: which
SBOM and which advisory store were read, the summary counts, every finding
and every component that could not be checked (with the reason). Each
caller adds its own context (when it ran, the VEX inputs) and, for the
CLI, the ``--fail-on`` gate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sbom.audit import AuditResult

__all__ = ["audit_document"]


def audit_document(
    result: AuditResult,
    *,
    sbom: Mapping[str, Any],
    store: Mapping[str, Any],
    imports: Sequence[Any],
    context: Mapping[str, Any],
    gate: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The audit document.

    Args:
        result: The audit.
        sbom: ``file``, ``sha256`` and ``serialNumber`` of the SBOM audited.
        store: ``file`` of the advisory store (its imports are added).
        imports: The store's import records (each with ``to_json()``).
        context: Keys after ``store`` saying when and with what the audit ran.
        gate: Keys last: the policy gate applied (``fail_on``, ``failing``).

    Returns:
        The JSON-able document, keys in a fixed order.
    """
    return {
        "sbom": dict(sbom),
        "store": {**store, "imports": [r.to_json() for r in imports]},
        **context,
        "summary": {"components": result.components, **result.counts()},
        "findings": [f.to_json() for f in result.findings],
        "unidentified": [
            {"bom-ref": c.bom_ref, "name": c.name, "version": c.version, "reason": why}
            for c, why in result.not_checked()
        ],
        **(gate or {}),
    }
