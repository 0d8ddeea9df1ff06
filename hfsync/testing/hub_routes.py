"""Routes of the emulated Hub (API server) and of the emulated CDN (second origin).

Shapes follow what huggingface_hub 2.4.0 sends and parses: ``/api/{type}s/{repo}[/revision/{rev}]``,
``/tree/{rev}[/{path}]`` with GitHub-style ``Link`` pagination, ``/paths-info``, ``/refs``,
``/commits``, ``/{prefix}{repo}/resolve/{rev}/{path}`` (302 to a signed CDN URL for LFS files, 307
to ``/api/resolve-cache`` for small public files, 200 for small private/gated files) and the Hub's
error headers (``X-Error-Code``/``X-Error-Message``), including its habit of answering 401 rather
than 404 to anonymous callers so private repos cannot be probed.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from .hub_http import BaseHandler, HttpError
from .hub_store import Commit, FileRec, RepoMeta, git_blob_sha1

TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
ACTIONS = {"revision", "tree", "paths-info", "refs", "commits", "resolve"}
TEXT_SUFFIXES = {
    ".json", ".txt", ".md", ".py", ".yaml", ".yml", ".csv", ".tsv", ".jsonl", ".cfg", ".ini",
    ".toml", ".html", ".xml", ".js", ".css", ".gitattributes", ".gitignore",
}  # fmt: skip
EXPAND_PAGE_SIZE = 50


def is_text(path: str) -> bool:
    """Files the Hub serves gzip-compressed to clients that accept gzip."""
    name = path.rsplit("/", 1)[-1]
    suffix = name[name.rfind(".") :] if "." in name else ""
    return name in (".gitattributes", "LICENSE", "README") or suffix.lower() in TEXT_SUFFIXES


def content_type(path: str) -> str:
    if path.endswith(".json"):
        return "application/json; charset=utf-8"
    return "text/plain; charset=utf-8" if is_text(path) else "application/octet-stream"


def hostile_bytes(path: str) -> bytes:
    """Plausible content served for injected hostile paths."""
    return f"hostile entry {path!r}\n".encode("utf-8", "backslashreplace")


def _is_sha(s: str) -> bool:
    return len(s) == 40 and all(c in "0123456789abcdef" for c in s)


def _split_repo(segs: list[str]) -> tuple[str, str | None, list[str]]:
    """``org/name/action/...`` or legacy ``name/action/...`` -> (repo_id, action, rest)."""
    if len(segs) >= 3 and segs[2] in ACTIONS:
        return "/".join(segs[:2]), segs[2], segs[3:]
    if len(segs) >= 2 and segs[1] in ACTIONS:
        return segs[0], segs[1], segs[2:]
    if len(segs) in (1, 2) and all(segs):
        return "/".join(segs), None, []
    raise HttpError(404, None, "Not Found")


def _granted(info: dict[str, list[str]] | None, repo_id: str, key: str) -> bool:
    if info is None:
        return False
    allowed = info.get(key, [])
    return repo_id in allowed or "*" in allowed


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return int(json.loads(raw)["o"])
    except (ValueError, KeyError, TypeError) as exc:
        raise HttpError(400, None, "Invalid cursor") from exc


class ApiHandler(BaseHandler):
    """The Hub's API and /resolve routes."""

    def route(self, path: str, segs: list[str]) -> None:
        if self.ctx.faults.captive_portal:
            body = b"<html><body>Please log in to the guest Wi-Fi</body></html>"
            return self.send_bytes(200, body, [("Content-Type", "text/html")])
        if segs and segs[0] == "api":
            while len(segs) > 1 and segs[-1] == "":
                segs = segs[:-1]
            self._api(segs[1:])
        else:
            self._resolve_route(segs)

    # ---- access control ---------------------------------------------------------------------

    def _token_info(self) -> dict[str, list[str]] | None:
        """The caller's grants; an unknown token is an error on every route, as on the Hub."""
        token = self.bearer()
        if token is None:
            return None
        info = self.ctx.store.tokens().get(token)
        if info is None:
            raise HttpError(401, None, "Invalid credentials in Authorization header")
        return info

    def _not_found(
        self, status: int, code: str, message: str, headers: list[tuple[str, str]] | None = None
    ) -> HttpError:
        """A Hub not-found error; a naive mirror answers 401 without an error code instead."""
        if self.ctx.faults.mirror_mode:
            return HttpError(401, None, message)
        return HttpError(status, code, message, headers or [])

    def _access(self, repo_type: str, repo_id: str, *, content: bool) -> RepoMeta:
        """The repo if the caller may see it (and read its files when ``content``)."""
        self.rec.repo_id, self.rec.repo_type = repo_id, repo_type
        info = self._token_info()
        meta = self.ctx.store.repo(repo_type, repo_id)
        if meta is None or (meta.private and not _granted(info, repo_id, "grants")):
            status = 401 if info is None else 404
            raise self._not_found(status, "RepoNotFound", "Repository not found")
        if content and meta.gated and not _granted(info, repo_id, "gated_accepted"):
            what = f"Access to {repo_type} {repo_id} is restricted"
            if info is None:
                msg = f"{what}. You must have access to it and be authenticated to access it."
                raise HttpError(401, "GatedRepo", msg + " Please log in.")
            msg = f"{what} and you are not in the authorized list."
            raise HttpError(403, "GatedRepo", msg + f" Visit {self.ctx.endpoint}/{repo_id}.")
        return meta

    def _commit_for(self, meta: RepoMeta, revision: str) -> Commit:
        self.rec.revision = revision
        sha = self.ctx.store.resolve(meta, revision)
        commit = sha and self.ctx.store.get_commit(meta.repo_type, meta.repo_id, sha)
        if not commit:
            raise self._not_found(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return commit

    # ---- /api -------------------------------------------------------------------------------

    def _api(self, segs: list[str]) -> None:
        if segs == ["whoami-v2"]:
            return self._whoami()
        if segs and segs[0] == "resolve-cache":
            return self._resolve_cache(segs[1:])
        if not segs or segs[0] not in TYPES:
            raise HttpError(404, None, "Not Found")
        repo_type = TYPES[segs[0]]
        repo_id, action, rest = _split_repo(segs[1:])
        rev = rest[0] if rest else "main"
        if action is None or action == "revision":
            meta = self._access(repo_type, repo_id, content=False)
            return self._repo_info(meta, self._commit_for(meta, "/".join(rest) or "main"))
        meta = self._access(repo_type, repo_id, content=False)
        if action == "tree":
            return self._tree(meta, self._commit_for(meta, rev), "/".join(rest[1:]))
        if action == "paths-info" and self.command == "POST":
            return self._paths_info(self._commit_for(meta, rev))
        if action == "refs":
            return self._refs(meta)
        if action == "commits":
            return self._commits(meta, self._commit_for(meta, rev))
        raise HttpError(404, None, "Not Found")

    def _whoami(self) -> None:
        info = self._token_info()
        if info is None:
            raise HttpError(401, None, "Invalid username or password.")
        token = {"displayName": "emulator", "role": "read"}
        self.send_json({"type": "user", "name": "emulator", "auth": {"accessToken": token}})

    def _repo_info(self, meta: RepoMeta, commit: Commit) -> None:
        blobs = self.rec.query.get("blobs", "").lower() in ("1", "true")
        siblings = []
        for path, rec in commit.files.items():
            sib: dict[str, Any] = {"rfilename": path}
            if blobs:
                sib.update(size=rec.size, blobId=rec.oid)
                if rec.lfs:
                    sib["lfs"] = {
                        "sha256": rec.sha256,
                        "size": rec.size,
                        "pointerSize": rec.pointer_size,
                    }
            siblings.append(sib)
        siblings += [{"rfilename": p} for p in self.ctx.faults.hostile_paths]
        info: dict[str, Any] = {
            "_id": hashlib.sha1(f"{meta.repo_type}/{meta.repo_id}".encode()).hexdigest()[:24],
            "id": meta.repo_id,
            "author": meta.repo_id.split("/")[0] if "/" in meta.repo_id else None,
            "sha": commit.sha,
            "lastModified": commit.date,
            "createdAt": meta.created_at,
            "private": meta.private,
            "gated": ("auto" if meta.gated is True else meta.gated) or False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
            "usedStorage": sum(r.size for r in commit.files.values()),
        }
        if meta.repo_type == "model":
            info["modelId"] = meta.repo_id
        self.send_json(info)

    def _entry(self, commit: Commit, path: str, expand: bool) -> dict[str, Any]:
        """One tree entry exactly as the Hub lists it."""
        if path in commit.dirs:
            entry: dict[str, Any] = {"type": "directory", "oid": commit.dirs[path], "path": path}
        else:
            rec = commit.files[path]
            entry = {"type": "file", "oid": rec.oid, "size": rec.size, "path": path}
            if rec.lfs:
                entry["lfs"] = {
                    "oid": rec.sha256,
                    "size": rec.size,
                    "pointerSize": rec.pointer_size,
                }
        if expand:
            entry["lastCommit"] = {"id": commit.sha, "title": commit.message, "date": commit.date}
        return entry

    def _walk(self, commit: Commit, folder: str, recursive: bool) -> list[str]:
        out = []
        for child in commit.children.get(folder, []):
            out.append(child)
            if recursive and child in commit.dirs:
                out.extend(self._walk(commit, child, recursive))
        return out

    def _hostile_entries(self) -> list[dict[str, Any]]:
        out = []
        for p in self.ctx.faults.hostile_paths:
            data = hostile_bytes(p)
            out.append({"type": "file", "oid": git_blob_sha1(data), "size": len(data), "path": p})
        return out

    def _override_entries(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Apply ``faults.tree_overrides`` / ``tree_extra`` (a hostile or broken listing)."""
        overrides, extra = self.ctx.faults.tree_overrides, self.ctx.faults.tree_extra
        out = []
        for item in items:
            patch = overrides.get(item["path"])
            if patch:
                item = {**item, **patch}
                if isinstance(patch.get("lfs"), dict) and isinstance(item.get("lfs"), dict):
                    item["lfs"] = {**(item.get("lfs") or {}), **patch["lfs"]}
            out.append(item)
        return out + [dict(e) for e in extra]

    def _tree(self, meta: RepoMeta, commit: Commit, folder: str) -> None:
        folder = folder.strip("/")
        if folder and folder not in commit.dirs:
            raise self._not_found(
                404, "EntryNotFound", f"{folder} does not exist", [("X-Repo-Commit", commit.sha)]
            )
        recursive = self.rec.query.get("recursive", "").lower() in ("1", "true")
        expand = self.rec.query.get("expand", "").lower() in ("1", "true")
        items = [self._entry(commit, p, expand) for p in self._walk(commit, folder, recursive)]
        if not folder:
            items += self._hostile_entries()
            items = self._override_entries(items)
        page_size = min(self.ctx.page_size, EXPAND_PAGE_SIZE) if expand else self.ctx.page_size
        self._send_page(items, page_size, [("X-Repo-Commit", commit.sha)])

    def _send_page(
        self, items: list[Any], page_size: int, headers: list[tuple[str, str]] | None = None
    ) -> None:
        """One page plus a GitHub-style ``Link: <absolute next url>; rel="next"`` header."""
        offset = _decode_cursor(self.rec.query["cursor"]) if "cursor" in self.rec.query else 0
        page = items[offset : offset + page_size]
        headers = list(headers or [])
        if self.ctx.faults.tree_next_loop:
            host = self.headers.get("Host") or f"127.0.0.1:{self.server.server_port}"
            headers.append(("Link", f'<http://{host}{self.path}>; rel="next"'))
        elif offset + page_size < len(items):
            query = {k: v for k, v in self.rec.query.items() if k != "cursor"}
            query["cursor"] = _encode_cursor(offset + page_size)
            host = self.headers.get("Host") or f"127.0.0.1:{self.server.server_port}"
            url = f"http://{host}{urlsplit(self.path).path}?{urlencode(query)}"
            headers.append(("Link", f'<{url}>; rel="next"'))
        self.send_json(page, headers)

    def _paths_info(self, commit: Commit) -> None:
        body = self.request_body.decode("utf-8", "replace")
        if self.headers.get("Content-Type", "").startswith("application/json"):
            data = json.loads(body or "{}")
            paths, expand = data.get("paths", []), bool(data.get("expand"))
        else:
            form = parse_qs(body, keep_blank_values=True)
            paths = form.get("paths", [])
            expand = (form.get("expand") or ["false"])[0].lower() in ("1", "true")
        out = []
        for p in paths:
            p = p.strip("/")
            if p in commit.files or p in commit.dirs:
                out.append(self._entry(commit, p, expand))
        self.send_json(out)

    def _refs(self, meta: RepoMeta) -> None:
        def refs(kind: str, names: dict[str, str]) -> list[dict[str, str]]:
            return [
                {"name": n, "ref": f"refs/{kind}/{n}", "targetCommit": sha}
                for n, sha in sorted(names.items())
            ]

        data: dict[str, Any] = {
            "branches": refs("heads", meta.branches),
            "tags": refs("tags", meta.tags),
            "converts": [],
        }
        if self.rec.query.get("include_prs"):
            data["pullRequests"] = []
        self.send_json(data)

    def _commits(self, meta: RepoMeta, commit: Commit) -> None:
        items = [
            {
                "id": c.sha,
                "title": c.message.split("\n", 1)[0],
                "message": c.message,
                "authors": [{"user": "emulator"}],
                "date": c.date,
            }
            for c in self.ctx.store.history(meta.repo_type, meta.repo_id, commit.sha)
        ]
        self._send_page(items, self.ctx.page_size)

    # ---- /resolve ---------------------------------------------------------------------------

    def _resolve_route(self, segs: list[str]) -> None:
        repo_type = "model"
        if segs and segs[0] in ("datasets", "spaces"):
            repo_type, segs = TYPES[segs[0]], segs[1:]
        if len(segs) >= 4 and segs[2] == "resolve":
            repo_id, rev, path = "/".join(segs[:2]), segs[3], "/".join(segs[4:])
        elif len(segs) >= 3 and segs[1] == "resolve":
            repo_id, rev, path = segs[0], segs[2], "/".join(segs[3:])
        else:
            raise HttpError(404, None, "Not Found")
        if self.command not in ("GET", "HEAD"):
            raise HttpError(405, None, "Method Not Allowed")
        self._resolve(repo_type, repo_id, rev, path)

    def _resolve(
        self, repo_type: str, repo_id: str, rev: str, path: str, *, cached: bool = False
    ) -> None:
        """Answer for one file; ``cached`` is the resolve-cache route, which never redirects
        small files again."""
        meta = self._access(repo_type, repo_id, content=True)
        commit = self._commit_for(meta, rev)
        self.rec.file_path = path
        commit_header = ("X-Repo-Commit", commit.sha)
        if self.ctx.faults.resolve_location is not None:
            location = self.ctx.faults.resolve_location
            return self.send_bytes(302, b"Found", [("Location", location), commit_header])
        if path in self.ctx.faults.hostile_paths:
            data = hostile_bytes(path)
            headers = [("ETag", f'"{git_blob_sha1(data)}"'), commit_header]
            return self.serve_ranged(headers, data, len(data), allow_gzip=False)
        rec = commit.files.get(path)
        if rec is None:
            raise self._not_found(404, "EntryNotFound", "Entry not found", [commit_header])
        if self.ctx.faults.mirror_mode:
            return self._serve_mirror(rec, commit, path)
        if rec.lfs:
            return self._redirect_to_cdn(repo_type, repo_id, rec, commit, path)
        if not cached and not meta.private and not meta.gated:
            location = f"/api/resolve-cache/{repo_type}s/{repo_id}/{commit.sha}/{quote(path)}"
            location += self.ctx.faults.resolve_cache_suffix
            headers = [("Location", location), commit_header, ("ETag", f'"{rec.oid}"')]
            body = f"Temporary Redirect. Redirecting to {location}".encode()
            return self.send_bytes(307, body, [("Content-Type", "text/plain"), *headers])
        self._serve_content(rec, commit, path)

    def _redirect_to_cdn(
        self, repo_type: str, repo_id: str, rec: FileRec, commit: Commit, path: str
    ) -> None:
        url = self.ctx.sign_url(repo_type, repo_id, path, rec.sha256)
        headers = [
            ("Location", url),
            ("X-Repo-Commit", commit.sha),
            ("X-Linked-Etag", f'"{rec.sha256}"'),
            ("X-Linked-Size", str(rec.size)),
            ("ETag", f'"{rec.oid}"'),
            ("Accept-Ranges", "bytes"),
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Vary", "Origin, Accept-Encoding"),
        ]
        self.send_bytes(302, f"Found. Redirecting to {url}".encode(), headers)

    def _file_headers(self, rec: FileRec, commit: Commit, path: str) -> list[tuple[str, str]]:
        name = path.rsplit("/", 1)[-1]
        return [
            ("Content-Type", content_type(path)),
            ("ETag", f'"{rec.etag}"'),
            ("X-Repo-Commit", commit.sha),
            ("Accept-Ranges", "bytes"),
            (
                "Content-Disposition",
                f"inline; filename*=UTF-8''{quote(name)}; filename=\"{name}\";",
            ),
            ("Vary", "Origin, Accept-Encoding"),
        ]

    def _serve_content(self, rec: FileRec, commit: Commit, path: str) -> None:
        headers = self._file_headers(rec, commit, path)
        blob = self.ctx.store.blob_path(rec.sha256)
        self.serve_ranged(headers, blob, rec.size, allow_gzip=is_text(path))

    def _serve_mirror(self, rec: FileRec, commit: Commit, path: str) -> None:
        """A naive mirror: full body, chunked, no redirect, no X-Linked-*, Range ignored."""
        self.rec.fault = "mirror"
        headers = self._file_headers(rec, commit, path)
        headers = [h for h in headers if h[0] != "Accept-Ranges"]
        blob = self.ctx.store.blob_path(rec.sha256)
        if self.ctx.faults.close_delimited:
            return self._send_close_delimited(headers, blob, rec.size)
        self.send_file(200, headers, blob, 0, rec.size, chunked=True)

    def _send_close_delimited(self, headers: list[tuple[str, str]], blob: Any, size: int) -> None:
        """HTTP/1.0-style body: no Content-Length, no chunking; closing the connection ends it,
        so a drop (``faults.drop_next``) looks exactly like the end of the body."""
        self.close_connection = True
        plan = self.ctx.faults.plan_body(self.server.kind, 0, size)
        self.rec.fault = "close-delimited"
        self.send_response(200)
        for key, value in [*headers, ("Connection", "close")]:
            self.send_header(key, value)
        self.rec.status = 200
        self.headers_sent = True
        self.end_headers()
        if self.command != "HEAD":
            self._send_pieces(blob, 0, size, plan, chunked=False)

    def _resolve_cache(self, segs: list[str]) -> None:
        """``/api/resolve-cache/{type}s/{repo}/{commit}/{path}``: commit-pinned small-file URL."""
        if not segs or segs[0] not in TYPES:
            raise HttpError(404, None, "Not Found")
        repo_type, rest = TYPES[segs[0]], segs[1:]
        if len(rest) >= 4 and _is_sha(rest[2]):
            repo_id, sha, path = "/".join(rest[:2]), rest[2], "/".join(rest[3:])
        elif len(rest) >= 3 and _is_sha(rest[1]):
            repo_id, sha, path = rest[0], rest[1], "/".join(rest[2:])
        else:
            raise HttpError(404, None, "Not Found")
        self._resolve(repo_type, repo_id, sha, path, cached=True)


class CdnHandler(BaseHandler):
    """The storage origin: serves blobs by sha256 to valid signed URLs only."""

    def route(self, path: str, segs: list[str]) -> None:
        if self.command not in ("GET", "HEAD"):
            return self._xml_error(405, "MethodNotAllowed", "Method not allowed")
        if len(segs) != 5 or segs[0] != "repos":
            return self._xml_error(404, "NoSuchKey", "The specified key does not exist.")
        query = self.rec.query
        origin = self.ctx.signer.issued.get(query.get("X-Amz-Signature", ""))
        if origin is not None:
            self.rec.repo_type, self.rec.repo_id, self.rec.file_path = origin
        if self.ctx.faults.take_expiry():
            self.ctx.expire_all_urls()
        reason = "Request has expired" if self.ctx.faults.expire_urls else None
        reason = reason or self.ctx.signer.check(path, query)
        if reason:
            return self._xml_error(403, "AccessDenied", reason)
        blob = self.ctx.store.blob_path(segs[4])
        try:
            size = blob.stat().st_size
        except (FileNotFoundError, ValueError):
            return self._xml_error(404, "NoSuchKey", "The specified key does not exist.")
        headers = [
            ("Content-Type", "application/octet-stream"),
            ("ETag", f'"{segs[4]}"'),
            ("Accept-Ranges", "bytes"),
            ("Cache-Control", "public, max-age=604800, immutable, s-maxage=604800"),
        ]
        if "response-content-disposition" in query:
            headers.append(("Content-Disposition", query["response-content-disposition"]))
        self.serve_ranged(headers, blob, size, allow_gzip=False)

    def _xml_error(self, status: int, code: str, message: str) -> None:
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
        ).encode()
        self.send_bytes(status, body, [("Content-Type", "application/xml")])
