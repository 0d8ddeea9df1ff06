"""Property tests of `files.validate_listing`: every valid listing passes, and one corrupted
id, size or path anywhere in it is always refused (RemotePathError, exit 5)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hfsync.errors import RemotePathError
from hfsync.files import RemoteFile, check_listing, validate_listing

HEX = "0123456789abcdef"
segment = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=8)
path = st.lists(segment, min_size=1, max_size=4).map("/".join)
hex40 = st.text(alphabet=HEX, min_size=40, max_size=40)
hex64 = st.text(alphabet=HEX, min_size=64, max_size=64)


@st.composite
def remote_file(draw: st.DrawFn, at: str) -> RemoteFile:
    return RemoteFile(
        path=at,
        size=draw(st.integers(min_value=0, max_value=2**45)),
        blob_id=draw(hex40),
        lfs_sha256=draw(st.none() | hex64),
    )


def _no_file_is_a_folder(paths: list[str]) -> bool:
    names = set(paths)
    return not any(p[:i] in names for p in paths for i, c in enumerate(p) if c == "/")


@st.composite
def listing(draw: st.DrawFn) -> list[RemoteFile]:
    paths = draw(st.lists(path, min_size=1, max_size=20, unique=True).filter(_no_file_is_a_folder))
    return [draw(remote_file(p)) for p in paths]


@given(listing())
def test_every_valid_listing_passes(files: list[RemoteFile]) -> None:
    validate_listing(files)
    check_listing(files)


BAD_IDS = st.one_of(
    st.text(max_size=70).filter(lambda s: not (len(s) == 40 and all(c in HEX for c in s))),
    hex40.map(str.upper).filter(lambda s: s != s.lower()),
    hex64,  # a sha256 where the git sha1 belongs
    st.none(),
    st.integers(),
)
BAD_SHA256 = st.one_of(
    st.text(min_size=1, max_size=70).filter(
        lambda s: not (len(s) == 64 and all(c in HEX for c in s))
    ),
    hex64.map(str.upper).filter(lambda s: s != s.lower()),
    hex40,
    st.just(""),
)
BAD_SIZES = st.one_of(
    st.integers(max_value=-1),
    st.floats(allow_nan=True),
    st.booleans(),
    st.none(),
    st.text(alphabet="0123456789", min_size=1, max_size=5),
)


@st.composite
def corrupted(draw: st.DrawFn) -> list[RemoteFile]:
    files = draw(listing())
    index = draw(st.integers(min_value=0, max_value=len(files) - 1))
    victim = files[index]
    kind = draw(st.sampled_from(["blob_id", "lfs_sha256", "size", "duplicate", "folder"]))
    if kind == "blob_id":
        files[index] = dataclasses.replace(victim, blob_id=draw(BAD_IDS))
    elif kind == "lfs_sha256":
        files[index] = dataclasses.replace(victim, lfs_sha256=draw(BAD_SHA256))
    elif kind == "size":
        files[index] = dataclasses.replace(victim, size=draw(BAD_SIZES))
    elif kind == "duplicate":
        files.insert(draw(st.integers(0, len(files))), draw(remote_file(victim.path)))
    else:
        child = f"{victim.path}/{draw(segment)}"
        files.insert(draw(st.integers(0, len(files))), draw(remote_file(child)))
    return files


@given(corrupted())
def test_one_corrupted_entry_refuses_the_whole_listing(files: list[RemoteFile]) -> None:
    with pytest.raises(RemotePathError, match="unverifiable listing"):
        check_listing(files)
