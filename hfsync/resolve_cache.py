"""Skipping the `/resolve` hop of small files: asking for their `/api/resolve-cache` URL directly.

On the Hub a small (non-LFS) file of a public repo costs two requests: `GET /{repo}/resolve/
{commit}/{path}` answers 307 with the relative, commit-pinned Location `/api/resolve-cache/
{type}s/{repo_id}/{commit}/{path}`, which serves the body (/work/shared/DESIGN.md section 4).
For 2,000 small files that is 4,000 requests, half of them to the rate-limited `/resolve`, each
holding one of the origin's few `/resolve` slots (`gate.OriginGate.resolve_slot`) for both hops.

The second URL is predictable from the first, so once one file of a repo+commit has been
redirected to exactly the URL predicted for it, the other files of that repo+commit are asked
for at their predicted URL directly: one request each, and none of them a `/resolve` call. A
prediction is only ever a guess about *where* the bytes are: every file is still verified
against its git blob sha1 before it lands, so a wrong guess costs a request, never a wrong
file. On any surprise from a predicted URL (a status other than 200/206, a redirect) the file
falls back to `/resolve` and nothing more is predicted for the rest of the run: the Hub then
works differently from what this module assumes, and asking twice per file is the safe way.

Only files the caller declared (`expect`) are ever predicted, so LFS files (302 to the CDN),
private repos (`/resolve` serves the body itself: nothing is ever confirmed) and URLs built
elsewhere keep the plain `/resolve` path.
"""

from __future__ import annotations

import threading

# What one prediction is confirmed for: (repo type, repo id, commit) -- as declared by `expect`.
Key = tuple[str, str, str]


class ResolveShortcuts:
    """Predicted resolve-cache URLs of one run; thread-safe.

    Reads take no lock (a dict/set lookup and a bool are atomic in CPython, and a stale read
    only means one more `/resolve` or one more prediction, both of which are handled).
    """

    def __init__(self) -> None:
        self._expected: dict[str, tuple[Key, str]] = {}  # /resolve URL -> (key, predicted URL)
        self._confirmed: set[Key] = set()
        self._off = False
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """False once a prediction failed: nothing is predicted for the rest of the run."""
        return not self._off

    def expect(self, resolve_url: str, predicted: str, key: Key) -> None:
        """Declare that `resolve_url` (a small file of `key`) redirects to `predicted`."""
        with self._lock:
            self._expected[resolve_url] = (key, predicted)

    def predict(self, resolve_url: str) -> str | None:
        """The URL to ask instead of `resolve_url`, once its repo+commit was confirmed."""
        if self._off or not self._confirmed:
            return None
        entry = self._expected.get(resolve_url)
        if entry is None or entry[0] not in self._confirmed:
            return None
        return entry[1]

    def learn(self, resolve_url: str, target: str) -> None:
        """`resolve_url` redirected to `target` (absolute): confirm its repo+commit when that is
        exactly the URL predicted for it."""
        entry = self._expected.get(resolve_url)
        if entry is None or entry[1] != target or self._off:
            return
        with self._lock:
            self._confirmed.add(entry[0])

    def surprise(self) -> None:
        """A predicted URL did not answer as a resolve-cache URL does: stop predicting."""
        with self._lock:
            self._off = True
