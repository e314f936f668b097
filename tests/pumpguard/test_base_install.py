"""The base-install test: ``pip install pumpguard`` with no extra runs what needs none.

A fresh venv gets the base distribution alone, built as a wheel from a copy
of the sources (so no stale ``build/`` of the checkout leaks into it) and
installed with its base dependencies only. Building and installing run
offline, from a wheelhouse of the build requirements and base dependencies
that is filled once per machine through pip's configured index and kept in
``~/.cache/pumpguard-tests`` (or ``$PUMPGUARD_WHEELHOUSE``), named by a hash
of those requirements and the interpreter, so editing them fills a new one.
One venv serves the whole session. Without the wheelhouse and no way to fill
it the tests skip, and fail under ``CI=true``.

In the venv: the server extra's modules are not importable, ``pumpguard
--help``, every group's and every subcommand's ``--help`` exit 0, and the
commands that need no extra run for real (keys, a local repository, a
release created, signed twice, verified and published, SBOM generation and
checks, device keys, a simulated pump, the threat model listing), while a
server command says which extra it needs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pumpguard.cli import EXTRA_MODULES
from pumpguard.fsutil import exclusive_lock

# One worker builds the session's base venv and runs every test on it (xdist).
pytestmark = pytest.mark.xdist_group("base-install")

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("pumpguard", "signer", "update_server", "device_agent", "sbom", "threat_model")
_PIP_TIMEOUT = 900


@dataclass(frozen=True)
class BaseVenv:
    """A venv holding the base install.

    Attributes:
        path: The venv.
        python: Its interpreter.
        pumpguard: Its ``pumpguard`` console script.
        wheel: The wheel it was installed from.
        seconds: How long building and installing took, by step.
    """

    path: Path
    python: Path
    pumpguard: Path
    wheel: Path
    seconds: dict[str, float]

    def env(self) -> dict[str, str]:
        """The environment to run its commands in: nothing of the checkout's."""
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")
        }
        env["PYTHONNOUSERSITE"] = "1"
        env["PATH"] = f"{self.path / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        return env


def _pyproject() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


def base_requirements() -> tuple[list[str], list[str]]:
    """The build requirements and the base dependencies of pyproject.toml."""
    data = _pyproject()
    build = data["build-system"]
    project = data["project"]
    assert isinstance(build, dict) and isinstance(project, dict)
    return list(build["requires"]), list(project["dependencies"])


def wheelhouse_dir() -> Path:
    """Where the wheelhouse for these requirements and this interpreter lives."""
    build, deps = base_requirements()
    key = hashlib.sha256(
        json.dumps([build, deps, sys.version, sysconfig.get_platform()]).encode()
    ).hexdigest()[:16]
    base = os.environ.get("PUMPGUARD_WHEELHOUSE")
    root = Path(base) if base else Path.home() / ".cache" / "pumpguard-tests"
    return root / f"wheelhouse-{key}"


def _run(args: list[str | Path], what: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=_PIP_TIMEOUT,
        check=False,
        **kwargs,  # type: ignore[call-overload]
    )
    if r.returncode != 0:
        raise RuntimeError(f"{what} failed ({r.returncode}):\n{r.stdout[-3000:]}{r.stderr[-3000:]}")
    return r


def _unavailable(message: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def ensure_wheelhouse() -> Path:
    """The filled wheelhouse; filled through pip's index the first time.

    Skips (fails under ``CI=true``) when it cannot be filled.
    """
    house = wheelhouse_dir()
    house.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(house / ".lock"):
        if (house / ".complete").exists():
            return house
        build, deps = base_requirements()
        pip = [sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", house]
        try:
            _run([*pip, *build], "pip wheel (build requirements)")
            _run([*pip, *deps], "pip wheel (base dependencies)")
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            _unavailable(f"cannot fill the base-install wheelhouse {house} through pip: {e}")
        (house / ".complete").write_text("")
    return house


def copy_sources(dest: Path) -> Path:
    """Copy what the sdist would hold: pyproject.toml, README.md and the packages."""
    dest.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, dest / package, ignore=ignore)
    return dest


def build_base_venv(work: Path) -> BaseVenv:
    """Build the wheel once and install it, base dependencies only, into a new venv."""
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    house = ensure_wheelhouse()
    seconds["wheelhouse"] = time.perf_counter() - start

    start = time.perf_counter()
    src = copy_sources(work / "src")
    dist = work / "dist"
    offline = ["--no-index", "--find-links", house]
    _run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *offline, "-w", dist, src],
        "building the pumpguard wheel",
    )
    (wheel,) = dist.glob("pumpguard-*.whl")
    seconds["wheel"] = time.perf_counter() - start

    start = time.perf_counter()
    venv = work / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], "python -m venv")
    python = venv / "bin" / "python"
    _run(
        [sys.executable, "-m", "pip", "--python", python, "install", "-q", *offline, wheel],
        "pip install pumpguard (base)",
    )
    seconds["install"] = time.perf_counter() - start
    return BaseVenv(venv, python, venv / "bin" / "pumpguard", wheel, seconds)


# Run by the base venv's interpreter: every command's --help, in one process.
_HELP_WALK = """
import contextlib, io, json, sys
import click
from pumpguard.cli import cli, main

def walk(group, prefix):
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        yield [*prefix, name]
        if isinstance(command, click.Group):
            yield from walk(command, [*prefix, name])

results = {}
for command in walk(cli, []):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([*command, "--help"]) or 0
        except SystemExit as e:
            code = e.code
    results[" ".join(command)] = [code, out.getvalue().startswith("Usage: "), err.getvalue()]
json.dump(results, sys.stdout)
"""

COMPONENTS = """\
[supplier]
name = "Acme Medical Devices"

[[component]]
name = "zlib"
version = "1.3.1"
supplier = "zlib"
purl = "pkg:generic/zlib@1.3.1"
licenses = ["Zlib"]
"""


@pytest.fixture(scope="session")
def base_venv(tmp_path_factory: pytest.TempPathFactory) -> BaseVenv:
    """One base install per session."""
    return build_base_venv(tmp_path_factory.mktemp("base-install"))


@dataclass
class Runner:
    """Runs the base venv's ``pumpguard`` in a work folder outside the checkout."""

    venv: BaseVenv
    cwd: Path
    seconds: list[tuple[str, float]] = field(default_factory=list)

    def __call__(self, *args: str | Path, code: int = 0) -> subprocess.CompletedProcess[str]:
        """Run ``pumpguard ARGS``; assert the exit code."""
        env = self.venv.env()
        env["PUMPGUARD_PASSPHRASE"] = "base-install-test-passphrase"
        start = time.perf_counter()
        r = subprocess.run(
            [str(self.venv.pumpguard), *map(str, args)],
            capture_output=True,
            text=True,
            cwd=self.cwd,
            env=env,
            timeout=120,
            check=False,
        )
        self.seconds.append((" ".join(map(str, args[:2])), time.perf_counter() - start))
        assert r.returncode == code, f"pumpguard {' '.join(map(str, args))}: {r.stderr}{r.stdout}"
        return r


@pytest.fixture
def run(base_venv: BaseVenv, tmp_path: Path) -> Runner:
    """``pumpguard`` of the base install, run in ``tmp_path``."""
    return Runner(base_venv, tmp_path)


def _py(venv: BaseVenv, code: str, cwd: Path) -> str:
    r = subprocess.run(
        [str(venv.python), "-c", code],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=venv.env(),
        timeout=300,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_base_install_has_no_server_or_pkcs11_dependency(
    base_venv: BaseVenv, tmp_path: Path
) -> None:
    found = json.loads(
        _py(
            base_venv,
            "import importlib.util, json, pumpguard\n"
            f"mods = {sorted(EXTRA_MODULES)!r}\n"
            "print(json.dumps({'file': pumpguard.__file__,"
            " 'found': [m for m in mods if importlib.util.find_spec(m)]}))",
            tmp_path,
        )
    )
    assert found["found"] == []
    assert Path(found["file"]).is_relative_to(base_venv.path), "imported the checkout"
    for package in PACKAGES:  # every package imports without an extra
        _py(base_venv, f"import {package}", tmp_path)
    print(f"base install: {base_venv.seconds}")


def test_every_command_group_has_help_on_a_base_install(run: Runner) -> None:
    top = run("--help").stdout
    groups = [line.split()[0] for line in top.split("Commands:")[1].splitlines() if line.strip()]
    assert {"device", "keys", "release", "repo", "sbom", "server", "agent"} <= set(groups)
    for group in groups:  # each in a fresh process: only that group's imports
        assert run(group, "--help").stdout.startswith("Usage: ")


def test_every_subcommand_has_help_on_a_base_install(base_venv: BaseVenv, tmp_path: Path) -> None:
    results = json.loads(_py(base_venv, _HELP_WALK, tmp_path))
    assert len(results) > 50
    failed = {cmd: (code, err) for cmd, (code, usage, err) in results.items() if code or not usage}
    assert failed == {}


def test_a_release_is_made_signed_verified_and_published_on_a_base_install(
    run: Runner, tmp_path: Path
) -> None:
    keys, repo = tmp_path / "keys", tmp_path / "repo"
    for name in ("root", "targets", "snapshot", "timestamp", "re", "qa"):
        run("keys", "generate", "--out", keys / name)
    run("keys", "show", keys / "re.pub")
    run(
        "repo", "init", "--repo", repo, "--root-key", keys / "root.pub",
        "--root-threshold", "1", "--targets-key", keys / "targets.pub",
        "--snapshot-key", keys / "snapshot.pub", "--timestamp-key", keys / "timestamp.pub",
        "--sign", keys / "root.key", "--sign", keys / "targets.key",
        "--sign", keys / "snapshot.key", "--sign", keys / "timestamp.key",
    )  # fmt: skip
    online = ("--snapshot-key", keys / "snapshot.key", "--timestamp-key", keys / "timestamp.key")
    run(
        "repo", "add-product", "--repo", repo, "--product", "sigma-spectrum",
        "--key", keys / "re.pub", "--key", keys / "qa.pub", "--threshold", "2",
        "--sign", keys / "targets.key", *online,
    )  # fmt: skip
    firmware, components = tmp_path / "fw.img", tmp_path / "components.toml"
    run("agent", "simulate", "firmware", "--version", "2.0.0", "--out", firmware)
    components.write_text(COMPONENTS)
    bundle = tmp_path / "release.tar"
    run(
        "release", "create", "--repo", repo, "--product", "sigma-spectrum",
        "--version", "2.0.0", "--release-counter", "2", "--hardware-id", "rev-b",
        "--firmware", firmware, "--components", components,
        "--supplier", "Acme Medical Devices", "--out", bundle, "--tar",
    )  # fmt: skip
    run("release", "sign", bundle, "--key", keys / "re.key")
    run("release", "verify", bundle, "--repo", repo, code=4)  # one of two signatures
    run("release", "sign", bundle, "--key", keys / "qa.key")
    run("release", "verify", bundle, "--repo", repo)
    run("release", "publish", bundle, "--repo", repo, *online)
    status = json.loads(run("repo", "status", "--repo", repo, "--json").stdout)
    assert "2.0.0" in json.dumps(status)

    sbom = tmp_path / "fw.cdx.json"
    run(
        "sbom", "generate", "--product", "sigma-spectrum", "--version", "2.0.0",
        "--firmware", firmware, "--components", components, "--out", sbom,
    )  # fmt: skip
    run("sbom", "check", sbom, "--policy", "ntia")
    vulndb = tmp_path / "vuln.db"
    run("vulndb", "import", "--db", vulndb, ROOT / "tests" / "sbom" / "fixtures" / "osv")
    run("vulndb", "status", "--db", vulndb)
    run("sbom", "audit", sbom, "--db", vulndb)

    pump = tmp_path / "pump"
    run(
        "agent", "simulate", "init", "--dir", pump, "--server", "https://updates.example",
        "--root", repo / "metadata" / "1.root.json", "--device-id", "pump-0001",
        "--product", "sigma-spectrum", "--hardware-id", "rev-b",
    )  # fmt: skip
    run("agent", "simulate", "therapy", "--dir", pump, "running")
    run("agent", "status", "--config", pump / "agent.toml")
    run("threats", "list")
    print(f"slowest commands: {sorted(run.seconds, key=lambda x: -x[1])[:5]}")


def test_device_keys_are_made_on_a_base_install(run: Runner, tmp_path: Path) -> None:
    out = json.loads(run("device", "keygen", "--out", tmp_path / "pump-0001", "--json").stdout)
    assert len(out["public_key"]) == 64
    assert (tmp_path / "pump-0001.pub").read_text().strip() == out["public_key"]
    # enroll runs as far as the network: no server listens on the discard port
    env_missing = run(
        "device", "enroll", "--server", "http://127.0.0.1:9", "--device-id", "pump-0001",
        "--hardware-id", "rev-b", "--product", "sigma-spectrum",
        "--public-key", tmp_path / "pump-0001.pub", code=2,
    )  # fmt: skip
    assert "PUMPGUARD_TOKEN" in env_missing.stderr


def test_a_server_command_names_the_extra_it_needs_on_a_base_install(
    run: Runner, tmp_path: Path
) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "server.toml").write_text("")
    r = run("server", "token", "list", "--data", tmp_path / "data", code=2)
    assert "pip install 'pumpguard[server]'" in r.stderr
    assert "Traceback" not in r.stderr
