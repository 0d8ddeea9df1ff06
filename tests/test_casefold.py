"""Case-insensitive or normalizing filesystems: `README.md` and `readme.md` are one file there.

A listing with two such paths is refused (exit 5) before anything is written, and `--delete`
compares on the same folded names, so a held `README.md` is never deleted as "not in source"
when the listing says `readme.md`. Linux here has no such filesystem to mount (no vfat, ext4
casefold needs a kernel built with CONFIG_UNICODE), so the real-filesystem test skips with
that reason where it cannot mount one; the rest drive the same code with the target's
`case_insensitive` flag set, which is all the orchestration reads.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import hfsync
from hfsync.errors import RemotePathError
from hfsync.files import RemoteFile
from hfsync.plan import PlanOptions, TargetFile, check_fold_collisions, fold_key, make_plan
from hfsync.targets.local import LocalTarget
from hfsync.testing.hub import HubEmulator
from tests.clirun import hfsync as run_cli
from tests.clirun import user_files

COMMIT = "a" * 40
NFC = "caf\u00e9.txt"
NFD = "cafe\u0301.txt"


def remote(path: str) -> RemoteFile:
    return RemoteFile(path=path, size=3, blob_id="1" * 40)


class FoldingTarget(LocalTarget):
    """A local folder whose filesystem is reported case-insensitive (the flag the probe sets)."""

    case_insensitive = True  # type: ignore[assignment]


# -- the pure rules ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second"),
    [("README.md", "readme.md"), (NFC, NFD), ("Straße.txt", "STRASSE.TXT"), ("Data", "data/x")],
)
def test_paths_equal_after_folding_are_refused(first: str, second: str) -> None:
    with pytest.raises(RemotePathError) as info:
        check_fold_collisions(["config.json", first, second])
    assert info.value.exit_code == 5
    assert "nothing was written" in str(info.value)
    assert repr(first) in str(info.value) or repr(second) in str(info.value)


def test_distinct_paths_pass_and_the_key_is_nfc_casefold() -> None:
    check_fold_collisions(["a/README.md", "b/readme.md", "data/x", "data2"])
    assert fold_key(NFD) == fold_key(NFC.upper()) == NFC


def test_delete_compares_on_folded_names_only_when_the_filesystem_folds() -> None:
    local = {"README.md": TargetFile("README.md", 3), "gone.txt": TargetFile("gone.txt", 1)}
    folded = make_plan(
        COMMIT, [remote("readme.md")], local, PlanOptions(delete=True, fold_names=True)
    )
    assert [item.path for item in folded.deletes] == ["gone.txt"]
    plain = make_plan(COMMIT, [remote("readme.md")], local, PlanOptions(delete=True))
    assert [item.path for item in plain.deletes] == ["README.md", "gone.txt"]


# -- through the library, with the target's flag set -----------------------------------------


@pytest.fixture
def clashing(hub: HubEmulator, hf_env: Path) -> str:
    hub.create_repo("org/clash")
    hub.commit("org/clash", files={"README.md": b"upper\n", "readme.md": b"lower\n"})
    hub.create_repo("org/lower")
    hub.commit("org/lower", files={"readme.md": b"lower\n", "config.json": b"{}\n"})
    return "org/clash"


def test_folding_target_refuses_a_clashing_listing_before_writing(
    clashing: str, tmp_path: Path
) -> None:
    dest = tmp_path / "dest"
    with pytest.raises(RemotePathError) as info:
        hfsync.sync(clashing, target=FoldingTarget(dest))
    assert info.value.exit_code == 5
    assert "'README.md' and 'readme.md'" in str(info.value)
    assert not dest.exists() or user_files(dest) == {}
    # The same listing is fine where names do not fold: both files land.
    plain = tmp_path / "plain"
    hfsync.sync(clashing, plain)
    assert user_files(plain) == {
        ".gitattributes": (plain / ".gitattributes").read_bytes(),
        "README.md": b"upper\n",
        "readme.md": b"lower\n",
    }


def test_folding_target_keeps_a_differently_cased_local_file_under_delete(
    clashing: str, tmp_path: Path
) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "README.md").write_bytes(b"mine\n")
    (dest / "stale.txt").write_bytes(b"old\n")
    result = hfsync.sync("org/lower", target=FoldingTarget(dest), delete=True)
    assert result.deleted == ["stale.txt"]
    assert (dest / "README.md").exists(), "the same file as the listed readme.md"


# -- the probe -------------------------------------------------------------------------------


def test_probe_on_this_case_sensitive_filesystem_says_false_and_writes_nothing(
    tmp_path: Path,
) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "Config.json").write_bytes(b"{}")
    assert LocalTarget(dest).case_insensitive is False
    assert LocalTarget(tmp_path / "not" / "yet").case_insensitive is False
    assert sorted(p.name for p in dest.iterdir()) == ["Config.json"]


def test_probe_says_true_when_the_case_swapped_name_is_the_same_file(tmp_path: Path) -> None:
    """What a folding filesystem answers, simulated by a hard link at the swapped name."""
    (tmp_path / "Config.json").write_bytes(b"{}")
    os.link(tmp_path / "Config.json", tmp_path / "cONFIG.JSON")
    assert LocalTarget(tmp_path).case_insensitive is True


# -- a real case-folding filesystem, where one can be mounted ---------------------------------


@pytest.fixture
def casefold_dir(tmp_path: Path) -> Iterator[Path]:
    """An empty case-folding folder on a loop-mounted ext4 (`-O casefold`, `chattr +F`)."""
    image, mnt = tmp_path / "cf.img", tmp_path / "cf"
    mnt.mkdir()
    try:
        subprocess.run(["truncate", "-s", "16M", str(image)], check=True, capture_output=True)
        subprocess.run(
            ["mkfs.ext4", "-q", "-F", "-O", "casefold", str(image)],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            ["mount", "-o", "loop", str(image), str(mnt)], check=True, capture_output=True
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", b"") or str(exc)
        pytest.skip(f"cannot mount a case-folding ext4 here (needs CONFIG_UNICODE): {detail!r}")
    try:
        folder = mnt / "dest"
        folder.mkdir()
        subprocess.run(["chattr", "+F", str(folder)], check=True, capture_output=True)
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_real_casefold_filesystem(clashing: str, casefold_dir: Path) -> None:
    assert LocalTarget(casefold_dir).case_insensitive is True
    refused = run_cli("sync", clashing, casefold_dir)
    assert refused.returncode == 5, refused.stderr
    assert "case-insensitive" in refused.stderr
    assert user_files(casefold_dir) == {}
    (casefold_dir / "README.md").write_bytes(b"lower\n")
    kept = run_cli("sync", "org/lower", casefold_dir, "--delete")
    assert kept.returncode == 0, kept.stderr
    assert (casefold_dir / "readme.md").read_bytes() == b"lower\n"
