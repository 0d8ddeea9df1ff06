"""The one TLS client context hfsync's own HTTP connections use (API GETs and downloads).

Why one place: the data path (transfer/wire.py) and the no-op's API path (hub_direct.py) bypass
`requests`, so they must verify certificates exactly as `requests` does, and the same way as
each other: the REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE bundle (a file or a folder), else certifi's,
never the system store; hostname checked; TLS 1.2 or newer; HTTP/1.1 offered by ALPN.
`ssl` and `certifi` are imported only when an https URL is met (start-up, tests/test_startup.py).
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING

from . import env

if TYPE_CHECKING:
    import ssl


def client_context() -> ssl.SSLContext:
    """The context for the bundle in effect now (one per bundle, shared: SSLContext is
    thread-safe once built)."""
    return _context(env.ca_bundle())


@functools.lru_cache(maxsize=4)
def _context(bundle: str | None) -> ssl.SSLContext:
    import ssl

    if not bundle:
        import certifi

        bundle = certifi.where()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED + check_hostname
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if os.path.isdir(bundle):
        context.load_verify_locations(capath=bundle)
    else:
        context.load_verify_locations(cafile=bundle)
    context.set_alpn_protocols(["http/1.1"])
    return context
