"""Bandit's JSON report as SARIF 2.1.0, and a minimal structural check of SARIF."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from threat_model.errors import AssuranceError

__all__ = ["SARIF_SCHEMA", "bandit_to_sarif", "validate_sarif"]

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"

#: Bandit severity -> SARIF level, as bandit's own SARIF formatter maps them.
_LEVELS = {"HIGH": "error", "MEDIUM": "warning", "LOW": "note", "UNDEFINED": "none"}


def bandit_to_sarif(report: Mapping[str, Any], bandit_version: str) -> dict[str, Any]:
    """Convert a (normalised) bandit JSON report to one SARIF run.

    File names are kept relative, under the ``SRCROOT`` base id, so the
    document does not depend on where the tree was checked out.
    """
    rules: dict[str, dict[str, Any]] = {}
    for r in report.get("results", []):
        rid = str(r["test_id"])
        if rid in rules:
            continue
        rule: dict[str, Any] = {
            "id": rid,
            "name": str(r.get("test_name", rid)),
            "shortDescription": {"text": str(r.get("test_name", rid))},
            "helpUri": str(r.get("more_info", "")),
            "properties": {"tags": ["security"]},
        }
        cwe = (r.get("issue_cwe") or {}).get("id")
        if cwe:
            rule["properties"]["tags"].append(f"CWE-{cwe}")
        rules[rid] = rule
    order = sorted(rules)
    results = []
    for r in report.get("results", []):
        line_range = [int(n) for n in r.get("line_range") or [r["line_number"]]]
        region: dict[str, Any] = {
            "startLine": int(r["line_number"]),
            "endLine": max([*line_range, int(r["line_number"])]),
            "startColumn": int(r.get("col_offset", 0)) + 1,
        }
        if r.get("code"):
            region["snippet"] = {"text": str(r["code"])}
        results.append(
            {
                "ruleId": str(r["test_id"]),
                "ruleIndex": order.index(str(r["test_id"])),
                "level": _LEVELS.get(str(r.get("issue_severity", "")).upper(), "warning"),
                "message": {"text": str(r["issue_text"])},
                "locations": [
                    {
                        "physicalLocation": {
                            "artifactLocation": {
                                "uri": str(r["filename"]),
                                "uriBaseId": "SRCROOT",
                            },
                            "region": region,
                        }
                    }
                ],
                "properties": {
                    "issue_severity": str(r.get("issue_severity", "")),
                    "issue_confidence": str(r.get("issue_confidence", "")),
                },
            }
        )
    notifications = [
        {"level": "error", "message": {"text": f"{err.get('filename')}: {err.get('reason')}"}}
        for err in report.get("errors", [])
    ]
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "Bandit",
                        "version": bandit_version,
                        "informationUri": "https://bandit.readthedocs.io/",
                        "rules": [rules[rid] for rid in order],
                    }
                },
                "invocations": [
                    {
                        "executionSuccessful": not notifications,
                        "toolExecutionNotifications": notifications,
                    }
                ],
                "results": results,
            }
        ],
    }


def validate_sarif(doc: Mapping[str, Any], where: str) -> None:
    """Check the parts of SARIF 2.1.0 that consumers rely on.

    Raises:
        AssuranceError: Naming the first field that is wrong.
    """

    def fail(field: str) -> AssuranceError:
        return AssuranceError(f"{where}: invalid SARIF 2.1.0: {field}")

    if doc.get("version") != "2.1.0":
        raise fail("version must be 2.1.0")
    runs = doc.get("runs")
    if not isinstance(runs, list) or not runs:
        raise fail("runs must be a non-empty array")
    for i, run in enumerate(runs):
        driver = run.get("tool", {}).get("driver", {}) if isinstance(run, dict) else {}
        if not isinstance(driver.get("name"), str) or not driver["name"]:
            raise fail(f"runs[{i}].tool.driver.name is required")
        rules = driver.get("rules", [])
        if not isinstance(rules, list):
            raise fail(f"runs[{i}].tool.driver.rules must be an array")
        results = run.get("results")
        if not isinstance(results, list):
            raise fail(f"runs[{i}].results must be an array")
        for j, result in enumerate(results):
            _check_result(result, rules, f"runs[{i}].results[{j}]", fail)


def _check_result(result: Any, rules: Sequence[Any], at: str, fail: Any) -> None:
    if not isinstance(result, dict):
        raise fail(f"{at} must be an object")
    if not isinstance(result.get("message", {}).get("text"), str):
        raise fail(f"{at}.message.text is required")
    index = result.get("ruleIndex")
    if index is not None and (
        not isinstance(index, int)
        or not 0 <= index < len(rules)
        or rules[index].get("id") != result.get("ruleId")
    ):
        raise fail(f"{at}.ruleIndex does not point at rule {result.get('ruleId')}")
    if result.get("level", "warning") not in ("none", "note", "warning", "error"):
        raise fail(f"{at}.level is not none, note, warning or error")
    for k, location in enumerate(result.get("locations", [])):
        physical = location.get("physicalLocation", {})
        if not isinstance(physical.get("artifactLocation", {}).get("uri"), str):
            raise fail(f"{at}.locations[{k}].physicalLocation.artifactLocation.uri is required")
        line = physical.get("region", {}).get("startLine", 1)
        if not isinstance(line, int) or line < 1:
            raise fail(f"{at}.locations[{k}].physicalLocation.region.startLine must be >= 1")
