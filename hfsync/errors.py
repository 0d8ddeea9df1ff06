"""Error classes, the exit codes they map to, and which code wins when several failed.

Every failure a user can meet is one of these, so the CLI can print one clear line and exit
with a code that cron and monitoring can branch on, instead of a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable


class HfsyncError(Exception):
    """Base class: a message meant for the user and the exit code it maps to."""

    exit_code = 1


class UsageError(HfsyncError):
    """The command line or an option value is wrong."""

    exit_code = 2


class NotFoundError(HfsyncError):
    """Repo, revision or file not found, or no access to it (401/403/404)."""

    exit_code = 3


class RepoNotFoundError(NotFoundError):
    """The repo does not exist, or is private and the token does not grant it."""


class RevisionNotFoundError(NotFoundError):
    """The branch, tag or commit does not exist in the repo."""


class EntryNotFoundError(NotFoundError):
    """A file listed in the repo could not be found at the commit."""


class GatedRepoError(NotFoundError):
    """The repo is gated and the token's user has not been granted access."""


class AuthError(NotFoundError):
    """The token was rejected (invalid or without the needed permission)."""


class NetworkError(HfsyncError):
    """The network kept failing after all retries."""

    exit_code = 4


class RemotePathError(HfsyncError):
    """The Hub listed a path that would escape the destination (hostile or broken repo)."""

    exit_code = 5


class IntegrityError(HfsyncError):
    """Downloaded bytes did not match the file's content id, even after a refetch."""

    exit_code = 5


class DiskError(HfsyncError):
    """Local or remote disk problem: no space, no permission, read-only filesystem."""

    exit_code = 6


class SSHError(HfsyncError):
    """SSH connection, authentication or host key failure."""

    exit_code = 7


class LockedError(HfsyncError):
    """Another sync holds the target's lock."""

    exit_code = 8


class Interrupted(HfsyncError):
    """The user interrupted the run; partial state was kept for resume."""

    exit_code = 130


# Most severe first (docs/architecture.md, "Exit codes"). An interrupt ends the run as the user
# asked, so it names the run. Then the failures that mean "the data is wrong": integrity, then
# disk (nothing more can be written), then the channel to a remote host, then access (a person
# must act: token, gating), then network (likely transient: the next cron run may pass), then a
# lock held by a concurrent run (benign), then usage and the unexpected.
SEVERITY = (130, 5, 6, 7, 3, 4, 8, 2, 1)


def severity_rank(code: int) -> int:
    """Position of an exit code in SEVERITY (0 = most severe); unknown codes rank last."""
    return SEVERITY.index(code) if code in SEVERITY else len(SEVERITY)


def most_severe_code(codes: Iterable[int]) -> int:
    """The exit code of a run whose parts ended with `codes` (0 when every part succeeded)."""
    failed = [code for code in codes if code]
    return min(failed, key=severity_rank) if failed else 0


def most_severe(errors: Iterable[BaseException]) -> BaseException | None:
    """The error whose exit code is most severe; ties go to the first, in the given order."""
    best: BaseException | None = None
    for error in errors:
        if best is None or severity_rank(exit_code_of(error)) < severity_rank(exit_code_of(best)):
            best = error
    return best


def exit_code_of(error: BaseException) -> int:
    if isinstance(error, HfsyncError):
        return error.exit_code
    if isinstance(error, KeyboardInterrupt):
        return 130
    return 1
