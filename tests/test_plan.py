"""The planner's rules, on plain data: what is new, changed, unchanged, deleted, excluded."""

from __future__ import annotations

import pytest

from hfsync.errors import RemotePathError
from hfsync.files import RemoteFile, validate_listing
from hfsync.plan import Action, PlanOptions, TargetFile, make_plan, selected

COMMIT = "a" * 40
SHA = "b" * 64


def remote(path: str, size: int = 10, blob: str = "1" * 40, lfs: str | None = None) -> RemoteFile:
    return RemoteFile(path=path, size=size, blob_id=blob, lfs_sha256=lfs)


def actions(plan) -> dict[str, tuple[str, str]]:
    return {item.path: (item.action.value, item.reason) for item in plan.items}


def test_new_changed_unchanged_and_reasons() -> None:
    files = [remote("new.txt"), remote("same.txt"), remote("grew.bin", 20), remote("edited.txt")]
    local = {
        "same.txt": TargetFile("same.txt", 10, "1" * 40, commit=COMMIT),
        "grew.bin": TargetFile("grew.bin", 10, "1" * 40),
        "edited.txt": TargetFile("edited.txt", 10, "2" * 40),
    }
    plan = make_plan(COMMIT, files, local)
    assert actions(plan) == {
        "new.txt": ("new", "new file"),
        "same.txt": ("unchanged", "identical"),
        "grew.bin": ("update", "size differs"),
        "edited.txt": ("update", "content differs"),
    }
    assert plan.bytes_to_transfer == 10 + 20 + 10
    assert plan.refreshes == []


def test_lfs_files_compare_on_sha256_not_pointer_oid() -> None:
    """The hfdown bug: comparing a content hash with the pointer's git oid never matches."""
    files = [remote("model.safetensors", 100, blob="9" * 40, lfs=SHA)]
    local = {"model.safetensors": TargetFile("model.safetensors", 100, SHA, commit=COMMIT)}
    assert actions(make_plan(COMMIT, files, local))["model.safetensors"][0] == "unchanged"


def test_hash_match_refreshes_metadata_without_download() -> None:
    files = [remote("a.txt"), remote("b.txt")]
    local = {
        "a.txt": TargetFile("a.txt", 10, "1" * 40, needs_record=True),
        "b.txt": TargetFile("b.txt", 10, "1" * 40, commit="c" * 40),
    }
    plan = make_plan(COMMIT, files, local)
    assert plan.transfers == []
    assert [item.path for item in plan.refreshes] == ["a.txt"], "an older commit is no reason"


def test_delete_only_when_asked_and_only_selected_files() -> None:
    files = [remote("keep.txt")]
    local = {
        "keep.txt": TargetFile("keep.txt", 10, "1" * 40, commit=COMMIT),
        "gone.txt": TargetFile("gone.txt", 5),
        "notes/mine.md": TargetFile("notes/mine.md", 5),
    }
    assert make_plan(COMMIT, files, local).deletes == []
    plan = make_plan(COMMIT, files, local, PlanOptions(delete=True, exclude=("notes/",)))
    assert [(i.path, i.reason) for i in plan.deletes] == [("gone.txt", "not in source (--delete)")]


def test_include_exclude_follow_hf_download_semantics() -> None:
    assert selected("onnx/model.onnx", ["onnx/"], [])
    assert selected("a/b/c.json", ["*.json"], [])  # '*' crosses folders, as in fnmatch
    assert not selected("model.bin", ["*.safetensors"], [])
    assert not selected("model.safetensors", [], ["*.safetensors"])
    assert not selected("x.json", ["*.json"], ["x.*"])
    files = [remote("model.bin"), remote("model.safetensors")]
    plan = make_plan(COMMIT, files, {}, PlanOptions(exclude=("*.bin",)))
    assert actions(plan)["model.bin"] == ("skipped", "excluded")
    assert [i.path for i in plan.transfers] == ["model.safetensors"]


@pytest.mark.parametrize(
    "path",
    [
        "../evil.txt",
        "a/../../evil",
        "/etc/passwd",
        "a\\b",
        "x\x00y",
        "C:evil",
        "",
        "a//b",
        "./a",
        ".cache/huggingface/download/x.metadata",
    ],
)
def test_hostile_paths_refuse_the_whole_plan(path: str) -> None:
    with pytest.raises(RemotePathError) as info:
        make_plan(COMMIT, [remote("fine.txt"), remote(path)], {})
    assert "nothing was written" in str(info.value)
    assert info.value.exit_code == 5


def test_counts_cover_every_action() -> None:
    plan = make_plan(COMMIT, [remote("a")], {"b": TargetFile("b", 1)}, PlanOptions(delete=True))
    assert plan.counts() == {"new": 1, "update": 0, "unchanged": 0, "delete": 1, "skipped": 0}
    assert {item.action for item in plan.items} == {Action.NEW, Action.DELETE}


def test_local_names_are_not_remote_paths_but_unsafe_reports_are_kept() -> None:
    """A walk finds `bad\\nname` inside DEST: deletable. A target reporting `../x` is broken:
    that path is never planned for deletion."""
    local = {
        "bad\nname": TargetFile("bad\nname", 1),
        "back\\slash": TargetFile("back\\slash", 1),
        "../outside": TargetFile("../outside", 1),
        "/etc/passwd": TargetFile("/etc/passwd", 1),
        ".cache/huggingface/x": TargetFile(".cache/huggingface/x", 1),
    }
    plan = make_plan(COMMIT, [remote("a")], local, PlanOptions(delete=True))
    assert sorted(i.path for i in plan.deletes) == ["back\\slash", "bad\nname"]
    kept = {i.path: i.reason for i in plan.items if i.action is Action.SKIPPED}
    assert set(kept) == {"../outside", "/etc/passwd", ".cache/huggingface/x"}
    assert set(kept.values()) == {"kept: unsafe local name"}


def test_a_validated_listing_is_not_checked_again_and_a_plain_one_still_is() -> None:
    """The orchestration validates a listing once and hands the result on (issue 12: three
    passes per no-op); the planner's own check stays for anything else it is given."""
    listing = validate_listing([remote("a.txt"), remote("b/c.txt")])
    assert validate_listing(listing) is listing
    assert isinstance(listing, tuple)  # immutable: it cannot turn invalid after the check
    assert actions(make_plan(COMMIT, listing, {})) == {
        "a.txt": ("new", "new file"),
        "b/c.txt": ("new", "new file"),
    }
    for bad in ([*listing, remote("../escape")], [*listing, remote("b")], [*listing] * 2):
        with pytest.raises(RemotePathError):
            make_plan(COMMIT, bad, {})
