"""One remote command that says whether a host can pull: its python3, the cached zipapp, the
endpoint as the host sees it (docs/architecture.md, "Remote pull and many hosts").

`--via auto` decides from this; `--via pull` refuses with the reason. The probe is a tiny
script for the host's `python3 -c` (any python3: it must report an old version, not fail on
its syntax), run once per host and run: its version, its home, the sha256 of the cached
archive if there is one, and a GET of the endpoint's revision URL with a short timeout. Any
HTTP answer proves reachability (a private repo's 401 does too: the token is not needed to
know the Hub can be reached, so it is not sent); a refused connection, a timeout, a DNS
failure or a dead proxy do not. A TLS verification failure against the host's own CA store
counts as reachable: the zipapp carries certifi's bundle.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import quote

from hfsync.remote.channel import first_line
from hfsync.remote.connection import SSHConnection, quote_command
from hfsync.remote.interpreters import interpreter, remember

PROBE_TIMEOUT = 8.0  # seconds the host's GET of the endpoint may take
AGENT_PYTHON = (3, 6)  # what the push agent's syntax needs (remote/host.py OLD_PYTHON)
NO_COMMAND = 127  # the shell's status for "python3: not found"

# Kept to syntax every python3 parses (no f-strings, no walrus), as the agent is.
PROBE_SOURCE = r"""
import hashlib, json, os, sys
out = {"python": list(sys.version_info[:3]), "executable": sys.executable,
       "home": os.path.expanduser("~")}
zp = os.path.expanduser(sys.argv[1])
try:
    h = hashlib.sha256()
    with open(zp, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    out["zip"] = h.hexdigest()
except (IOError, OSError):
    out["zip"] = None
if sys.argv[2]:
    try:
        import ssl
        import urllib.error
        import urllib.request
        try:
            r = urllib.request.urlopen(sys.argv[2], timeout=float(sys.argv[3]))
            out["reach"] = {"ok": True, "status": r.getcode()}
            r.close()
        except urllib.error.HTTPError as e:
            out["reach"] = {"ok": True, "status": e.code}
        except urllib.error.URLError as e:
            if isinstance(e.reason, ssl.SSLError):
                out["reach"] = {"ok": True, "status": None, "note": str(e.reason)}
            else:
                out["reach"] = {"ok": False, "error": str(e.reason)}
    except Exception as e:
        out["reach"] = {"ok": False, "error": "%s: %s" % (type(e).__name__, e)}
sys.stdout.write(json.dumps(out) + "\n")
"""


@dataclass(frozen=True)
class Probe:
    """What the host said. `python` is None when it has no python3 on its PATH."""

    python: tuple[int, ...] | None
    executable: str | None = None
    home: str | None = None
    zip_sha256: str | None = None
    reachable: bool | None = None  # None: not asked
    reach_detail: str = ""
    problem: str = ""  # why the probe itself could not run (no python3, …)

    def pull_blocker(self, min_python: tuple[int, int], endpoint: str) -> str:
        """Why this host cannot pull ("" when it can), as one clause for a message."""
        if self.python is None:
            return self.problem or "no python3 on the host's PATH"
        if tuple(self.python[:2]) < min_python:
            have = ".".join(map(str, self.python[:3]))
            want = ".".join(map(str, min_python))
            return f"its python3 is {have}; hfsync needs {want} or newer"
        if self.reachable is False:
            return f"it cannot reach {endpoint} ({self.reach_detail})"
        return ""


def reach_url(endpoint: str, repo_id: str, repo_type: str, revision: str) -> str:
    """The URL the host GETs: the revision endpoint of the repo (any answer proves a route)."""
    return f"{endpoint.rstrip('/')}/api/{repo_type}s/{repo_id}/revision/{quote(revision, safe='')}"


def probe(conn: SSHConnection, zip_path: str, url: str | None) -> Probe:
    """Run the probe on the host (one remote command). `zip_path` may start with `~/`."""
    command = quote_command(
        ["python3", "-c", PROBE_SOURCE, zip_path, url or "", str(PROBE_TIMEOUT)]
    )
    status, out, err = conn.run(command, timeout=PROBE_TIMEOUT + 30)
    if status == NO_COMMAND:
        said = first_line(err)
        return Probe(None, problem=f"no python3 on the host's PATH ({said or 'not found'})")
    try:
        doc = json.loads(out.decode("utf-8", errors="replace").strip().splitlines()[-1])
        version = tuple(int(v) for v in doc["python"])
    except (ValueError, KeyError, IndexError, TypeError):
        said = first_line(err) or first_line(out) or f"exit status {status}"
        return Probe(None, problem=f"the host's python3 could not run the probe: {said}")
    reach = doc.get("reach")
    reachable = None if reach is None else bool(reach.get("ok"))
    if reach is None:
        detail = ""
    elif reachable:
        detail = f"HTTP {reach.get('status')}" if reach.get("status") else "TLS answered"
    else:
        detail = str(reach.get("error") or "no answer")[:200]
    executable = interpreter(doc.get("executable"))
    if version >= AGENT_PYTHON:  # this run's control session, and later runs, start it directly
        remember(conn, executable)
    return Probe(
        python=version,
        executable=None if executable == "python3" else executable,
        home=doc.get("home"),
        zip_sha256=doc.get("zip"),
        reachable=reachable,
        reach_detail=detail,
    )
