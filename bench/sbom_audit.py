#!/usr/bin/env python3
"""Offline SBOM audit against a large vulnerability store (see bench/README.md).

Generates, deterministically, advisories in OSV form (an osv.dev-style
``all.zip``) and NVD CVE JSON 2.0 form (one feed), and the SBOM of a firmware
with 2,000 components (half matched by purl, half by CPE). For a small and a
large store (10,000 and 100,000 advisories by default) it prints:

(a) the import time (``sbom.feeds.read_feed`` + ``VulnDb.import_feed``, both files);
(b) the audit time of the SBOM through the store's indexes
    (``sbom.audit.audit``, median of ``--repeat`` runs);
(c) in the same run, a straightforward linear scan: every affected entry of
    every advisory in the store read and checked against the SBOM's components
    (a dictionary lookup per entry, the same matching functions), the way a
    tool without an index audits;

and the ratios (c)/(b) and large/small for (b). Goals (issue 5): audit <= 1 s
and independent of the number of advisories; import <= 60 s. The exit status
is 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sbom import build_firmware_sbom
from sbom._cpe import parse_cpe
from sbom._purl import purl_keys
from sbom.audit import audit, cpe_affects, osv_affects
from sbom.feeds import read_feed
from sbom.manifest import ComponentSpec
from sbom.model import SbomComponent, component_identity, load_sbom, read_components
from sbom.vulndb import VulnDb

#: Advisories per affected package (or CPE product): the density is kept the
#: same at every store size, so a larger store is more packages, as in reality.
PER_PACKAGE = 5
ECOSYSTEMS = (("PyPI", "pypi"), ("npm", "npm"), ("Go", "golang"), ("crates.io", "cargo"))


def _version(rng: random.Random) -> str:
    return f"{rng.randint(0, 9)}.{rng.randint(0, 30)}.{rng.randint(0, 20)}"


def _ranges(rng: random.Random) -> list[tuple[str, str]]:
    """One or two [introduced, fixed) ranges as (introduced, fixed)."""
    major = rng.randint(0, 8)
    first = ("0", f"{major}.{rng.randint(0, 30)}.{rng.randint(1, 20)}")
    if rng.random() < 0.5:
        return [first]
    return [first, (f"{major + 1}.0.0", f"{major + 1}.{rng.randint(0, 30)}.{rng.randint(1, 20)}")]


def _package(i: int) -> tuple[str, str, str]:
    ecosystem, purl_type = ECOSYSTEMS[i % len(ECOSYSTEMS)]
    name = f"golang.org/x/pkg{i}" if purl_type == "golang" else f"pkg-{i}"
    return ecosystem, purl_type, name


def write_feeds(directory: Path, advisories: int, seed: int) -> tuple[Path, Path]:
    """Write ``advisories`` advisories: half OSV (all.zip), half NVD (one feed)."""
    rng = random.Random(seed)
    osv_count = advisories // 2
    nvd_count = advisories - osv_count
    osv_zip = directory / "all.zip"
    with zipfile.ZipFile(osv_zip, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for i in range(osv_count):
            ecosystem, _, name = _package(i // PER_PACKAGE)
            record = {
                "schema_version": "1.6.0",
                "id": f"BENCH-{i:07d}",
                "modified": "2024-01-01T00:00:00Z",
                "published": "2024-01-01T00:00:00Z",
                "aliases": [f"CVE-2099-{i:07d}"],
                "summary": f"synthetic advisory {i}",
                "severity": [
                    {"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H"}
                ],
                "affected": [
                    {
                        "package": {"ecosystem": ecosystem, "name": name},
                        "ranges": [
                            {
                                "type": "SEMVER" if ecosystem != "PyPI" else "ECOSYSTEM",
                                "events": [{"introduced": a}, {"fixed": b}],
                            }
                            for a, b in _ranges(rng)
                        ],
                    }
                ],
            }
            archive.writestr(f"BENCH-{i:07d}.json", json.dumps(record))
    vulnerabilities: list[dict[str, Any]] = []
    for i in range(nvd_count):
        product = f"product{i // PER_PACKAGE}"
        matches = []
        for start, end in _ranges(rng):
            match: dict[str, Any] = {
                "vulnerable": True,
                "criteria": f"cpe:2.3:a:vendor{i // PER_PACKAGE}:{product}:*:*:*:*:*:*:*:*",
                "versionEndExcluding": end,
                "matchCriteriaId": str(uuid.UUID(int=rng.getrandbits(128))).upper(),
            }
            if start != "0":
                match["versionStartIncluding"] = start
            matches.append(match)
        vulnerabilities.append(
            {
                "cve": {
                    "id": f"CVE-2098-{i:07d}",
                    "published": "2024-01-01T00:00:00.000",
                    "lastModified": "2024-01-01T00:00:00.000",
                    "vulnStatus": "Analyzed",
                    "descriptions": [{"lang": "en", "value": f"synthetic CVE {i}"}],
                    "metrics": {
                        "cvssMetricV31": [
                            {
                                "source": "nvd@nist.gov",
                                "type": "Primary",
                                "cvssData": {
                                    "version": "3.1",
                                    "vectorString": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
                                    "baseScore": 9.8,
                                    "baseSeverity": "CRITICAL",
                                },
                            }
                        ]
                    },
                    "configurations": [
                        {"nodes": [{"operator": "OR", "negate": False, "cpeMatch": matches}]}
                    ],
                }
            }
        )
    nvd = directory / "nvdcve-2.0-bench.json"
    feed = {
        "resultsPerPage": nvd_count,
        "startIndex": 0,
        "totalResults": nvd_count,
        "format": "NVD_CVE",
        "version": "2.0",
        "timestamp": "2024-01-01T00:00:00.000",
        "vulnerabilities": vulnerabilities,
    }
    nvd.write_text(json.dumps(feed), encoding="utf-8")
    return osv_zip, nvd


def write_sbom(path: Path, components: int, advisories: int, seed: int) -> None:
    """An SBOM of ``components`` components: half by purl, half by CPE.

    Components are drawn from the packages (and CPE products) the smallest
    store has advisories for, so every store size has the same candidates per
    component and about the same findings.
    """
    rng = random.Random(seed + 1)
    packages = (advisories // 2) // PER_PACKAGE
    specs = []
    for i in range(components):
        # Most components are newer than every advisory's ranges (majors 0-9);
        # about one in ten has a version somewhere in them.
        version = _version(rng) if rng.random() < 0.1 else f"10.{rng.randint(0, 9)}.0"
        n = rng.randrange(packages)
        if i % 2 == 0:
            _, purl_type, name = _package(n)
            namespace, _, short = name.rpartition("/")
            purl = f"pkg:{purl_type}/{namespace + '/' if namespace else ''}{short}@{version}"
            specs.append(ComponentSpec(name=f"c{i}-{name}", version=version, purl=purl))
        else:
            cpe = f"cpe:2.3:a:vendor{n}:product{n}:{version}:*:*:*:*:*:*:*"
            specs.append(ComponentSpec(name=f"c{i}-product{n}", version=version, cpe=cpe))
    document = build_firmware_sbom(
        product="sigma-spectrum",
        version="8.1.0",
        firmware_name="firmware.img",
        firmware_sha256="0" * 64,
        firmware_size=1,
        components=specs,
        timestamp=datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC),
        serial_number=uuid.UUID(int=seed),
    )
    path.write_bytes(document)


def linear_scan(db: VulnDb, components: Sequence[SbomComponent]) -> int:
    """Audit by reading every affected entry in the store (no index): the reference."""
    by_package: dict[tuple[str, str], list[tuple[SbomComponent, str]]] = {}
    by_cpe: dict[str, list[tuple[SbomComponent, str, str]]] = {}
    for c in components:
        keys = purl_keys(c.purl) if c.purl else None
        if keys and keys.version:
            for key in keys.keys:
                by_package.setdefault(key, []).append((c, keys.version))
        cpe = parse_cpe(c.cpe) if c.cpe else None
        if cpe and c.version:
            by_cpe.setdefault(cpe.product, []).append((c, cpe.vendor, c.version))
    findings = 0
    connection = db._db  # the reference reads the tables directly, as a plain scan would
    from sbom.vulndb import _advisory, _package_range

    for row in connection.execute(
        "SELECT a.source, a.vuln_id, a.aliases, a.summary, a.published, a.modified, "
        "a.cvss_score, a.cvss_vector, a.severity, p.ecosystem, p.name, p.raw_ecosystem, "
        "p.raw_name, p.ranges, p.versions FROM affected_packages p "
        "JOIN advisories a ON a.id = p.advisory"
    ):
        candidates = by_package.get((row[9], row[10]))
        if candidates:
            _advisory(row[:9])
            package = _package_range(row[11:])
            findings += sum(osv_affects(version, package) for _, version in candidates)
    from sbom.advisory import CpeRange

    for row in connection.execute(
        "SELECT a.vuln_id, c.part, c.vendor, c.product, c.version, c.cpe_update, "
        "c.start_including, c.start_excluding, c.end_including, c.end_excluding "
        "FROM affected_cpes c JOIN advisories a ON a.id = c.advisory"
    ):
        cpe_candidates = by_cpe.get(row[3])
        if cpe_candidates:
            cpe_range = CpeRange(*row[1:])
            findings += sum(
                cpe_affects(version, "*", cpe_range)
                for _, vendor, version in cpe_candidates
                if vendor in ("*", cpe_range.vendor)
            )
    return findings


@dataclass
class Result:
    """What one store size measured."""

    advisories: int
    import_s: float
    audit_s: float
    scan_s: float
    findings: int
    scan_matches: int


def run_size(work: Path, advisories: int, sbom: Path, repeat: int, seed: int, log: Any) -> Result:
    """Build a store of ``advisories`` advisories and audit ``sbom`` against it."""
    directory = work / f"feeds-{advisories}"
    directory.mkdir()
    osv_zip, nvd = write_feeds(directory, advisories, seed)
    store = work / f"store-{advisories}.sqlite"
    start = time.perf_counter()
    with VulnDb.open(store, create=True) as db:
        for path in (osv_zip, nvd):
            db.import_feed(read_feed(path))
    import_s = time.perf_counter() - start
    log(f"  {advisories:,} advisories imported in {import_s:.1f} s")

    components = read_components(load_sbom(sbom.read_bytes(), str(sbom)))
    audits, scans = [], []
    findings = scan_matches = 0
    with VulnDb.open(store, readonly=True) as db:
        for _ in range(repeat):
            start = time.perf_counter()
            result = audit(
                components, db, db.analyses({component_identity(c)[0] for c in components})
            )
            audits.append(time.perf_counter() - start)
            findings = len(result.findings)
            start = time.perf_counter()
            scan_matches = linear_scan(db, components)
            scans.append(time.perf_counter() - start)
    return Result(
        advisories,
        import_s,
        statistics.median(audits),
        statistics.median(scans),
        findings,
        scan_matches,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000", help="store sizes (advisories)")
    parser.add_argument("--components", type=int, default=2000, help="SBOM components")
    parser.add_argument("--repeat", type=int, default=3, help="timed audits per size")
    parser.add_argument("--seed", type=int, default=5, help="generator seed")
    parser.add_argument("--workdir", type=Path, default=None, help="where to build")
    parser.add_argument("--json", action="store_true", help="print JSON results")
    args = parser.parse_args(argv)
    sizes = sorted(int(s) for s in args.sizes.split(","))

    def log(message: str) -> None:
        if not args.json:
            print(message, file=sys.stderr)

    work = Path(tempfile.mkdtemp(prefix="pumpguard-sbom-bench-", dir=args.workdir))
    try:
        sbom = work / "sbom.cdx.json"
        write_sbom(sbom, args.components, sizes[0], args.seed)
        log(f"SBOM of {args.components:,} components written")
        results = [run_size(work, n, sbom, args.repeat, args.seed, log) for n in sizes]
    finally:
        shutil.rmtree(work, ignore_errors=True)

    small, large = results[0], results[-1]
    growth = large.audit_s / small.audit_s if small.audit_s else float("inf")
    goals = {
        "audit <= 1 s": large.audit_s <= 1.0,
        "import <= 60 s": large.import_s <= 60.0,
        # "Independent of the number of advisories": within 1.5x across sizes.
        "audit independent of store size": growth <= 1.5,
        "same matches as the linear scan": all(r.findings == r.scan_matches for r in results),
    }
    if args.json:
        print(
            json.dumps(
                {"results": [r.__dict__ for r in results], "audit_growth": growth, "goals": goals},
                indent=2,
            )
        )
    else:
        print(
            f"{'advisories':>11} {'import s':>9} {'audit s':>8} {'scan s':>8} "
            f"{'scan/audit':>10} {'findings':>9}"
        )
        for r in results:
            print(
                f"{r.advisories:>11,} {r.import_s:>9.2f} {r.audit_s:>8.3f} {r.scan_s:>8.3f} "
                f"{r.scan_s / r.audit_s:>10.1f} {r.findings:>9,}"
            )
        print(f"audit time {large.advisories:,} / {small.advisories:,} advisories: {growth:.2f}")
        for goal, met in goals.items():
            print(f"  {'ok  ' if met else 'MISS'} {goal}")
    return 0 if all(goals.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
