"""A local publish that runs out of space: one line, and the repository as it was.

The repository sits on a real tmpfs filled so that exactly the given number of
pages (or inodes) is free; the publish then fails at the step the table names.
Afterwards every file and folder is what it was (nothing unreferenced is left,
threats PWR-1 and SRV-DOS), and once there is room the same publish succeeds.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import signer.repository
from repo_support import PRODUCT, CliResult, RepoEnv, publish_args
from signer.bundle import create_release, open_bundle, sign_bundle
from tmpfs_support import fill, free_inodes, free_pages, page_size, tmpfs

_FIRMWARE_SIZE = 64 * 1024  # sixteen pages: a copy can also fail half-way


def _bundle(env: RepoEnv, version: str, counter: int) -> Path:
    out = env.work / f"bundle-{version}.tar"
    create_release(
        repo=env.repo,
        product=PRODUCT,
        version=version,
        release_counter=counter,
        hardware_ids=("rev-b",),
        firmware=env.firmware(version, size=_FIRMWARE_SIZE),
        out=out,
        tar=True,
    )
    for name in ("re1", "qa1"):
        sign_bundle(out, env.signer(name))
    return out


def _snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file (with its bytes) and folder (None) below ``root``, hidden ones included."""
    return {
        str(p.relative_to(root)): None if p.is_dir() else p.read_bytes()
        for p in sorted(root.rglob("*"))
    }


def _publish(env: RepoEnv, repo: Path, bundle: Path) -> CliResult:
    """`pumpguard release publish` as a process: its real stderr and exit code."""
    args = [str(a) for a in publish_args(env, bundle)]
    args[args.index(str(env.path))] = str(repo)
    return _pumpguard(*args)


def _pumpguard(*args: str | Path) -> CliResult:
    done = subprocess.run(
        [sys.executable, "-m", "pumpguard", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


def _writes(env: RepoEnv, bundle: Path, reference: Path) -> list[tuple[str, int]]:
    """What the publish creates, in the order it does, as (what, bytes) pairs.

    Measured by publishing the same bundle into a copy of the repository on an
    ordinary disk; the target order is the order :meth:`Repository.publish`
    copies them in (the verified new targets).
    """
    shutil.copytree(env.path, reference)
    before = _snapshot(reference)
    with open_bundle(bundle) as b:
        verified = signer.repository.Repository(reference).publish(
            b.product, b.metadata(), b.files(), env.online
        )
    after = _snapshot(reference)
    new = {k: v for k, v in after.items() if k not in before and v is not None}
    order: list[tuple[str, int]] = []
    for path, target in verified.new_targets.items():
        directory, _, name = path.rpartition("/")
        order.append((name, len(new.pop(f"targets/{directory}/{target.hashes['sha256']}.{name}"))))
    (product_md,) = (k for k in new if k.endswith(f".{PRODUCT}.json"))
    order.append(("product metadata", len(new.pop(product_md))))
    (snapshot,) = (k for k in new if k.endswith(".snapshot.json"))
    order.append(("snapshot", len(new.pop(snapshot))))
    assert new == {}, f"the publish wrote more than the test knows of: {sorted(new)}"
    timestamp = after["metadata/timestamp.json"]
    assert timestamp is not None
    order.append(("timestamp", len(timestamp)))  # written beside the old one, then renamed
    return order


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of 4 MiB and 4,096 inodes, for the repository and its filler."""
    with tmpfs(tmp_path / "fs", size=4 << 20, inodes=4096) as mount:
        yield mount


def _pages(size: int, page: int) -> int:
    return math.ceil(size / page)


#: Where the space runs out: the write that fails, and how far into it.
_PAGE_STEPS = {
    "first-target-nothing-free": ("firmware.img", 0.0),
    "first-target-half-copied": ("firmware.img", 0.5),
    "second-target": ("sbom.cdx.json", 0.0),
    "delegated-metadata": ("product metadata", 0.0),
    "snapshot": ("snapshot", 0.0),
    "timestamp": ("timestamp", 0.0),
}


@pytest.mark.parametrize("step", list(_PAGE_STEPS))
def test_publish_out_of_space_fails_in_one_line_and_leaves_the_repository_as_it_was(
    repo_env: RepoEnv, full_disk: Path, tmp_path: Path, step: str
) -> None:
    """ENOSPC at each step of a publish: exit 1, one line, not one byte left behind."""
    env = repo_env
    bundle = _bundle(env, "1.0.0", 1)
    writes = _writes(env, bundle, tmp_path / "reference")
    names = [w for w, _ in writes]
    failing, fraction = _PAGE_STEPS[step]
    assert failing in names, f"{failing} is not among the writes {names}"
    page = page_size(full_disk)
    index = names.index(failing)
    budget = sum(_pages(size, page) for _, size in writes[:index])
    budget += int(_pages(writes[index][1], page) * fraction)
    needed = sum(_pages(size, page) for _, size in writes)

    repo = full_disk / "repo"
    shutil.copytree(env.path, repo)
    before = _snapshot(repo)
    fill(full_disk / "filler", leave_pages=budget)

    failed = _publish(env, repo, bundle)

    assert failed.code == 1, failed
    lines = failed.err.splitlines()
    assert len(lines) == 1, failed.err
    assert lines[0].startswith(f"error: publishing {PRODUCT} 1.0.0 failed: "), failed.err
    assert "No space left on device" in lines[0]
    assert "Traceback" not in failed.err
    assert _snapshot(repo) == before
    assert free_pages(full_disk) == budget  # nothing of the failed publish takes room

    # Exactly the room the publish needs is enough: nothing left blocks it.
    (full_disk / "filler" / "pages").unlink()
    fill(full_disk / "filler", leave_pages=needed)
    published = _publish(env, repo, bundle)
    assert published.code == 0, published
    assert [r.version for r in signer.repository.Repository(repo).releases(PRODUCT)] == ["1.0.0"]


#: Folders and files each take an inode: running out of them fails a mkdir too.
_INODE_STEPS = {
    "product-folder": 0,
    "release-folder": 1,
    "first-target": 2,
    "second-target": 3,
    "timestamp": 6,
}


@pytest.mark.parametrize("step", list(_INODE_STEPS))
def test_publish_out_of_inodes_removes_the_folders_it_made(
    repo_env: RepoEnv, full_disk: Path, tmp_path: Path, step: str
) -> None:
    """No inode left for a folder or a file: the folders made before it are removed too."""
    env = repo_env
    bundle = _bundle(env, "1.0.0", 1)
    repo = full_disk / "repo"
    shutil.copytree(env.path, repo)
    assert not (repo / "targets" / PRODUCT).exists()  # the first release makes both folders
    before = _snapshot(repo)
    budget = _INODE_STEPS[step]
    fill(full_disk / "filler", leave_inodes=budget)

    failed = _publish(env, repo, bundle)

    assert failed.code == 1, failed
    assert len(failed.err.splitlines()) == 1, failed.err
    assert "No space left on device" in failed.err
    assert _snapshot(repo) == before
    assert free_inodes(full_disk) == budget

    for leftover in (full_disk / "filler").iterdir():
        leftover.unlink()
    assert _publish(env, repo, bundle).code == 0


def test_failed_publish_keeps_the_leftovers_of_an_earlier_killed_publish(
    repo_env: RepoEnv, full_disk: Path, tmp_path: Path
) -> None:
    """Files that were there before the publish are never removed by its undo."""
    env = repo_env
    bundle = _bundle(env, "1.0.0", 1)
    reference = tmp_path / "reference"
    _writes(env, bundle, reference)
    repo = full_disk / "repo"
    shutil.copytree(env.path, repo)
    # A publish killed before timestamp.json left the targets and the product's
    # metadata (unreferenced) behind; this publish writes the same ones again.
    shutil.copytree(reference / "targets" / PRODUCT, repo / "targets" / PRODUCT)
    product_md = f"metadata/1.{PRODUCT}.json"
    shutil.copy2(reference / product_md, repo / product_md)
    before = _snapshot(repo)
    # Room for the product metadata's rewrite; the snapshot is the write that fails.
    rewrite = before[product_md]
    assert rewrite is not None
    fill(full_disk / "filler", leave_pages=_pages(len(rewrite), page_size(full_disk)))

    failed = _publish(env, repo, bundle)

    assert failed.code == 1, failed
    assert len(failed.err.splitlines()) == 1, failed.err
    assert "No space left on device" in failed.err
    assert _snapshot(repo) == before


def test_failure_after_timestamp_was_replaced_removes_nothing(
    repo_env: RepoEnv,
    run_cli: Callable[..., CliResult],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Once timestamp.json holds the new bytes the release is published: nothing is undone.

    The fault (fsync of the metadata folder failing after the rename) is injected:
    a real one needs a failing block device.
    """
    env = repo_env
    bundle = _bundle(env, "1.0.0", 1)
    real_write = signer.repository.atomic_write_bytes

    def write_then_fail(path: Path, data: bytes, *args: Any, **kwargs: Any) -> None:
        real_write(path, data, *args, **kwargs)
        if path.name == "timestamp.json":
            raise OSError(5, os.strerror(5))

    monkeypatch.setattr(signer.repository, "atomic_write_bytes", write_then_fail)
    r = run_cli(*publish_args(env, bundle))

    assert r.code == 1, r
    assert r.err == (
        f"error: publishing {PRODUCT} 1.0.0: published, but Input/output error after"
        " timestamp.json was replaced (the new files may not be on disk yet)\n"
    )
    monkeypatch.undo()
    assert [x.version for x in env.repo.releases(PRODUCT)] == ["1.0.0"]
    targets = sorted(
        p.name.split(".", 1)[1] for p in (env.path / "targets").rglob("*") if p.is_file()
    )
    assert targets == ["firmware.img", "sbom.cdx.json"]


def _online_args(env: RepoEnv) -> tuple[str | Path, ...]:
    return ("--snapshot-key", env.key("snapshot"), "--timestamp-key", env.key("timestamp"))


def _refresh(env: RepoEnv, repo: Path) -> tuple[str | Path, ...]:
    return ("repo", "refresh", "--repo", repo, "--force", *_online_args(env))


def _add_product(env: RepoEnv, repo: Path) -> tuple[str | Path, ...]:
    return (
        "repo", "add-product", "--repo", repo, "--product", "omega-flow",
        "--key", env.pub("re2"), "--threshold", "1", "--sign", env.key("targets"),
        *_online_args(env),
    )  # fmt: skip


#: Re-signing and adding a product write snapshot and timestamp the same way.
_OTHER_WRITES = {
    "refresh-snapshot": (_refresh, 0, "re-signing snapshot and timestamp"),
    "refresh-timestamp": (_refresh, 1, "re-signing snapshot and timestamp"),
    "add-product-targets": (_add_product, 0, "adding product omega-flow"),
    "add-product-snapshot": (_add_product, 1, "adding product omega-flow"),
    "add-product-timestamp": (_add_product, 2, "adding product omega-flow"),
}


@pytest.mark.parametrize("case", list(_OTHER_WRITES))
def test_other_repository_writes_out_of_space_leave_the_repository_as_it_was(
    repo_env: RepoEnv, full_disk: Path, case: str
) -> None:
    """`repo refresh` and `repo add-product` on a full disk: one line, nothing left behind."""
    env = repo_env
    command, pages, operation = _OTHER_WRITES[case]
    repo = full_disk / "repo"
    shutil.copytree(env.path, repo)
    before = _snapshot(repo)
    fill(full_disk / "filler", leave_pages=pages)  # each metadata file fits one page

    failed = _pumpguard(*command(env, repo))

    assert failed.code == 1, failed
    assert failed.err == (
        f"error: {operation} failed: No space left on device; the repository is as it was\n"
    )
    assert _snapshot(repo) == before

    (full_disk / "filler" / "pages").unlink()
    assert _pumpguard(*command(env, repo)).code == 0
