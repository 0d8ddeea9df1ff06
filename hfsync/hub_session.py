"""The pooled `requests` session of a `HubClient`, built on first use.

Its own module because importing `requests` (with urllib3, charset_normalizer, idna and the
cookie jar) costs more CPU than a whole no-op re-sync does otherwise: `hfsync.hub` imports this
module only when a request needs the session (downloads, HEAD, a redirected or proxied API
call), so `hfsync --version` and a no-op re-sync never load it (tests/test_startup.py).

The token is sent only to the Hub endpoint's own origin: redirects to the CDN (or anywhere
else) never carry it (docs/architecture.md, "Hub protocol").
"""

from __future__ import annotations

import requests
from requests.adapters import HTTPAdapter

from . import env
from .defaults import origin

# Request failures that are the same on every try: said at once instead of retried.
NOT_RETRYABLE: tuple[type[BaseException], ...] = (
    requests.exceptions.InvalidSchema,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidURL,
    requests.exceptions.InvalidHeader,
)
RETRYABLE = requests.RequestException


class _NoCookies(requests.cookies.RequestsCookieJar):
    """The Hub's API and CDN need no cookies; not parsing them saves time on every request."""

    def extract_cookies(self, response, request) -> None:  # noqa: ANN001 - cookiejar API
        return None

    def set_cookie(self, cookie, *args, **kwargs) -> None:  # noqa: ANN001, ANN002, ANN003
        return None


class HubSession(requests.Session):
    """A session that only ever sends Authorization to the Hub endpoint's origin."""

    def __init__(self, endpoint: str, token: str | None) -> None:
        super().__init__()
        self.cookies = _NoCookies()
        self._hub_origin = origin(endpoint)
        self._token = token

    def prepare_request(self, request: requests.Request) -> requests.PreparedRequest:
        prepared = super().prepare_request(request)
        self._apply_auth(prepared)
        return prepared

    def rebuild_auth(self, prepared_request, response) -> None:  # noqa: ANN001 - requests API
        self._apply_auth(prepared_request)

    def _apply_auth(self, prepared: requests.PreparedRequest) -> None:
        prepared.headers.pop("Authorization", None)
        if self._token and origin(prepared.url or "") == self._hub_origin:
            prepared.headers["Authorization"] = f"Bearer {self._token}"


def new_session(endpoint: str, token: str | None, pool_size: int, user_agent: str) -> HubSession:
    """The session every download and non-trivial API call of one client shares."""
    session = HubSession(endpoint, token)
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers.update({"User-Agent": user_agent, "Accept-Encoding": "identity"})
    _configure_environment(session)
    return session


def _configure_environment(session: requests.Session) -> None:
    """Skip requests' per-request scan of proxy variables and ~/.netrc when no proxy is set.

    That scan costs about a fifth of the client time of a small-file request, and ~/.netrc
    credentials have no business on Hub or CDN requests. A custom CA bundle still applies.
    """
    if env.proxy_configured():
        return
    session.trust_env = False
    bundle = env.ca_bundle()
    if bundle:
        session.verify = bundle
