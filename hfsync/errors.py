"""Error classes and the exit codes they map to (DESIGN §7).

Every failure a user can meet is one of these, so the CLI can print one clear line and exit
with a code that cron and monitoring can branch on, instead of a traceback.
"""

from __future__ import annotations


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
