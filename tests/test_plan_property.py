"""Property tests of the planner's path rules and selection (hypothesis).

`check_remote_path` accepts every path built from safe segments and refuses every path with
`..`, a leading `/`, a backslash, a NUL or control character, or the `.cache/huggingface`
prefix; `make_plan` never plans an item at an unsafe path, whatever a target reports; and
`selected()` keeps `hf download`'s allow/ignore semantics.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hfsync.errors import RemotePathError
from hfsync.files import RemoteFile, check_remote_path
from hfsync.plan import Action, PlanOptions, TargetFile, make_plan, safe_local_path, selected

COMMIT = "c" * 40

# Any printable character but the separators and ':' (a drive letter on Windows).
safe_char = st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="/\\:")
segment = st.text(safe_char, min_size=1, max_size=10).filter(lambda s: s not in (".", ".."))
safe_path = (
    st.lists(segment, min_size=1, max_size=5)
    .filter(lambda parts: not (len(parts) > 1 and parts[:2] == [".cache", "huggingface"]))
    .map("/".join)
)
control = st.sampled_from([chr(c) for c in range(0x20)])


@given(safe_path)
def test_paths_of_safe_segments_pass(path: str) -> None:
    check_remote_path(path)


def _inject(path: str, where: int, what: str) -> str:
    cut = where % (len(path) + 1)
    return path[:cut] + what + path[cut:]


@st.composite
def unsafe_path(draw: st.DrawFn) -> str:
    path = draw(safe_path)
    kind = draw(st.sampled_from(["dotdot", "absolute", "backslash", "control", "state"]))
    parts = path.split("/")
    if kind == "dotdot":
        parts.insert(draw(st.integers(0, len(parts))), "..")
        return "/".join(parts)
    if kind == "absolute":
        return "/" + path
    if kind == "backslash":
        return _inject(path, draw(st.integers(0)), "\\")
    if kind == "control":
        return _inject(path, draw(st.integers(0)), draw(control))
    return ".cache/huggingface/" + path


@given(unsafe_path())
def test_unsafe_paths_are_refused_with_exit_5(path: str) -> None:
    with pytest.raises(RemotePathError) as info:
        check_remote_path(path)
    assert info.value.exit_code == 5


# -- make_plan never plans at an unsafe path ------------------------------------------------

any_local_name = st.one_of(safe_path, unsafe_path(), st.text(max_size=12))


@st.composite
def scenario(draw: st.DrawFn) -> tuple[list[RemoteFile], dict[str, TargetFile], PlanOptions]:
    paths = draw(st.lists(safe_path, max_size=8, unique=True))
    names = set(paths)
    paths = [p for p in paths if not any(p.startswith(n + "/") for n in names)]
    remote = [RemoteFile(p, draw(st.integers(0, 3)), "1" * 40) for p in paths]
    local_names = draw(st.lists(st.one_of(st.sampled_from(paths or ["x"]), any_local_name)))
    local = {
        name: TargetFile(name, draw(st.integers(0, 3)), draw(st.sampled_from([None, "1" * 40])))
        for name in local_names
    }
    patterns = st.lists(st.sampled_from(["*.bin", "a*", "*/", "x/", "*"]), max_size=2)
    options = PlanOptions(
        tuple(draw(patterns)), tuple(draw(patterns)), draw(st.booleans()), draw(st.booleans())
    )
    return remote, local, options


@given(scenario())
def test_make_plan_never_returns_an_unsafe_item(case: tuple) -> None:
    remote, local, options = case
    plan = make_plan(COMMIT, remote, local, options)
    listed = {f.path for f in remote}
    seen = [item.path for item in plan.items]
    assert len(seen) == len(set(seen)), "one decision per path"
    for item in plan.items:
        if item.action is Action.DELETE:
            assert safe_local_path(item.path), item.path
            assert item.path not in listed and options.delete
            assert ".." not in item.path.split("/") and not item.path.startswith("/")
        elif item.path in listed:
            check_remote_path(item.path)
            excluded = not selected(item.path, options.include, options.exclude)
            assert (item.action is Action.SKIPPED) == excluded
        else:
            assert item.action is Action.SKIPPED and not safe_local_path(item.path)
    assert listed <= set(seen), "every listed file has a decision"


# -- selection semantics --------------------------------------------------------------------


@given(safe_path)
def test_no_filters_keep_everything_and_star_crosses_folders(path: str) -> None:
    assert selected(path, [], [])
    assert selected(path, ["*"], [])
    assert not selected(path, [], ["*"])


@given(safe_path, safe_path)
def test_a_folder_pattern_means_everything_below_it(folder: str, rest: str) -> None:
    inside = f"{folder}/{rest}"
    pattern = folder.replace("[", "[[]").replace("*", "[*]").replace("?", "[?]") + "/"
    assert selected(inside, [pattern], [])
    assert not selected(inside, [], [pattern])


@given(safe_path, st.lists(st.sampled_from(["*.bin", "*.json", "a*", "*/", "*"]), max_size=3))
def test_exclude_wins_over_include(path: str, patterns: list[str]) -> None:
    escaped = path.replace("[", "[[]").replace("*", "[*]").replace("?", "[?]")
    assert not selected(path, [escaped, *patterns], [escaped])
    assert selected(path, [escaped, *patterns], [])
