"""A loopback Hugging Face Hub for tests: the endpoints huggingface_hub 2.4 uses to download and to commit files.

Repos live on disk as `<root>/<owner>/<name>/<commit-sha>/<files>`; branch heads (`main`) are kept in memory.
Served:
- HEAD/GET `/{repo}/resolve/{revision}/{path}`: `X-Repo-Commit`, `ETag` (git blob sha1), `Content-Length`. Like
  the Hub with LFS files, `*.safetensors` get a 302 to a CDN on another origin (a second port, so the client does
  not follow it on HEAD and drops the auth header) with `X-Linked-Etag` (sha256) and `X-Linked-Size`. No `X-Xet-*`
  headers, so the client does a plain HTTP download. 404s carry the `X-Error-Code` huggingface_hub maps to
  RepositoryNotFound / RevisionNotFound / EntryNotFound.
- POST `/api/repos/create`, `/api/validate-yaml`, `/api/models/{repo}/preupload/{rev}`, `/api/models/{repo}/commit/
  {rev}` (NDJSON, base64 files) and GET `/api/models/{repo}/revision/{rev}`: enough for create_repo + create_commit.
  Preupload answers "regular" for every file, so file bytes travel inline in the commit; the real Hub sends large or
  binary files to Xet/LFS storage, which is not emulated.
Write endpoints require `Authorization: Bearer <token>` when the server has a token. Every request is counted in
`requests[(method, path)]` (CDN paths: `/cdn/<sha256>`) so tests can assert cache hits.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import threading
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import yaml

_SHA = re.compile(r"[0-9a-f]{40}")
_REPO = r"(?P<repo>[^/]+/[^/]+)"


class HubServer:
    def __init__(self, root, token: str | None = None, lfs_suffixes=(".safetensors",)):
        self.root, self.token, self.lfs_suffixes = Path(root), token, tuple(lfs_suffixes)
        self.refs: dict[str, dict[str, str]] = {}  # repo_id -> {branch: commit}
        self.blobs: dict[str, Path] = {}  # sha256 -> a file with those bytes, for the CDN
        self.requests: Counter = Counter()
        self.cdn_auth: list[str | None] = []  # Authorization header of each CDN request
        self._lock = threading.Lock()
        self._servers = [ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, cdn)) for cdn in (False, True)]
        self.url, self.cdn_url = (f"http://127.0.0.1:{s.server_address[1]}" for s in self._servers)

    def __enter__(self):
        for s in self._servers:
            s.daemon_threads = True
            threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc):
        for s in self._servers:
            s.shutdown()
            s.server_close()

    # --- storage ------------------------------------------------------------------------------------------------
    def create_repo(self, repo_id: str) -> bool:
        with self._lock:
            if repo_id in self.refs:
                return False
            self.refs[repo_id] = {}
            (self.root / repo_id).mkdir(parents=True, exist_ok=True)
            return True

    def commit(self, repo_id: str, files: dict[str, bytes], deleted=(), branch: str = "main", parent=None) -> str:
        """New commit on `branch`: its parent's files, minus `deleted`, plus `files`. Returns the 40-hex sha."""
        self.create_repo(repo_id)
        with self._lock:
            head = self.refs[repo_id].get(branch)
            if parent is not None and parent != head:
                raise ValueError(f"parent {parent} is not the head of {branch}")
            sha = hashlib.sha1(uuid.uuid4().bytes).hexdigest()
            new = self.root / repo_id / sha
            if head:
                shutil.copytree(self.root / repo_id / head, new)
            new.mkdir(parents=True, exist_ok=True)
            for path in deleted:
                (new / path).unlink(missing_ok=True)
            for path, data in files.items():
                (new / path).parent.mkdir(parents=True, exist_ok=True)
                (new / path).write_bytes(data)
                self.blobs[hashlib.sha256(data).hexdigest()] = new / path
            self.refs[repo_id][branch] = sha
            return sha

    def resolve(self, repo_id: str, revision: str) -> str | None:
        if _SHA.fullmatch(revision) and (self.root / repo_id / revision).is_dir():
            return revision
        return self.refs.get(repo_id, {}).get(revision)

    def count(self, method: str, path: str) -> int:
        return self.requests[(method, path)]


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _handler(hub: HubServer, cdn: bool):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep pytest output clean
            pass

        def _send(self, status: int, body: bytes = b"", headers: dict | None = None, head_only=False):
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head_only:
                self.wfile.write(body)

        def _json(self, status: int, obj, headers: dict | None = None):
            self._send(status, json.dumps(obj).encode(), {"Content-Type": "application/json", **(headers or {})})

        def _error(self, status: int, code: str | None, message: str, headers: dict | None = None, head_only=False):
            h = {"X-Error-Message": message, **({"X-Error-Code": code} if code else {}), **(headers or {})}
            self._send(status, json.dumps({"error": message}).encode(), h, head_only)

        def _route(self, method: str):
            path = unquote(urlsplit(self.path).path)
            with hub._lock:
                hub.requests[(method, path)] += 1
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) if method == "POST" else b""
            if cdn:
                return self._cdn(path, head_only=method == "HEAD")
            if m := re.fullmatch(rf"/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<file>.+)", path):
                return self._resolve(m["repo"], m["rev"], m["file"], head_only=method == "HEAD")
            if method == "GET" and (m := re.fullmatch(rf"/api/models/{_REPO}/revision/(?P<rev>[^/]+)", path)):
                return self._repo_info(m["repo"], m["rev"])
            if method != "POST":
                return self._error(404, None, "Not Found")
            if hub.token and self.headers.get("Authorization") != f"Bearer {hub.token}":
                return self._error(401, None, "Invalid credentials in Authorization header")
            if path == "/api/repos/create":
                return self._create(json.loads(body))
            if path == "/api/validate-yaml":
                return self._validate_yaml(json.loads(body))
            if m := re.fullmatch(rf"/api/models/{_REPO}/preupload/(?P<rev>[^/]+)", path):
                return self._preupload(m["repo"], m["rev"], json.loads(body))
            if m := re.fullmatch(rf"/api/models/{_REPO}/commit/(?P<rev>[^/]+)", path):
                return self._commit(m["repo"], m["rev"], [json.loads(x) for x in body.splitlines() if x.strip()])
            return self._error(404, None, "Not Found")

        def do_HEAD(self):
            self._route("HEAD")

        def do_GET(self):
            self._route("GET")

        def do_POST(self):
            self._route("POST")

        # --- endpoints ----------------------------------------------------------------------------------------
        def _resolve(self, repo_id, revision, filename, head_only):
            if repo_id not in hub.refs:
                return self._error(404, "RepoNotFound", "Repository not found", head_only=head_only)
            sha = hub.resolve(repo_id, revision)
            if sha is None:
                return self._error(404, "RevisionNotFound", "Invalid rev id", head_only=head_only)
            file = hub.root / repo_id / sha / filename
            if not file.is_file():
                return self._error(404, "EntryNotFound", "Entry not found", {"X-Repo-Commit": sha}, head_only)
            data = file.read_bytes()
            if filename.endswith(hub.lfs_suffixes):
                sha256 = hashlib.sha256(data).hexdigest()
                return self._send(302, b"", {"X-Repo-Commit": sha, "X-Linked-Etag": f'"{sha256}"',
                                             "X-Linked-Size": str(len(data)), "ETag": f'"{_git_blob_sha1(data)}"',
                                             "Location": f"{hub.cdn_url}/cdn/{sha256}"}, head_only)
            self._send(200, data, {"X-Repo-Commit": sha, "ETag": f'"{_git_blob_sha1(data)}"',
                                   "Content-Type": "application/octet-stream"}, head_only)

        def _cdn(self, path, head_only):
            hub.cdn_auth.append(self.headers.get("Authorization"))
            blob = hub.blobs.get(path.removeprefix("/cdn/"))
            if blob is None:
                return self._send(404, b"NoSuchKey", head_only=head_only)
            self._send(200, blob.read_bytes(), {"Content-Type": "application/octet-stream"}, head_only)

        def _repo_info(self, repo_id, revision):
            sha = hub.resolve(repo_id, revision) if repo_id in hub.refs else None
            if sha is None:
                code = "RepoNotFound" if repo_id not in hub.refs else "RevisionNotFound"
                return self._error(404, code, "Not found")
            files = sorted(str(p.relative_to(hub.root / repo_id / sha))
                           for p in (hub.root / repo_id / sha).rglob("*") if p.is_file())
            self._json(200, {"id": repo_id, "modelId": repo_id, "sha": sha, "private": False,
                             "siblings": [{"rfilename": f} for f in files]})

        def _create(self, payload):
            repo_id = f"{payload['organization']}/{payload['name']}"
            url = f"{hub.url}/{repo_id}"
            if not hub.create_repo(repo_id):
                return self._json(409, {"error": "You already created this model repo", "url": url})
            self._json(200, {"url": url, "name": repo_id})

        def _validate_yaml(self, payload):
            content = payload.get("content", "")
            m = re.match(r"---\n(.*?)\n---", content, re.S)
            try:
                meta = yaml.safe_load(m[1]) if m else {}
                assert meta is None or isinstance(meta, dict), "metadata must be a mapping"
            except Exception as e:
                return self._json(400, {"errors": [{"message": str(e)}], "warnings": []})
            self._json(200, {"errors": [], "warnings": []})

        def _preupload(self, repo_id, revision, payload):
            if repo_id not in hub.refs:
                return self._error(404, "RepoNotFound", "Repository not found")
            sha = hub.resolve(repo_id, revision)
            out = []
            for f in payload["files"]:
                remote = hub.root / repo_id / sha / f["path"] if sha else None
                oid = _git_blob_sha1(remote.read_bytes()) if remote and remote.is_file() else None
                out.append({"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": oid})
            self._json(200, {"files": out})

        def _commit(self, repo_id, branch, lines):
            if repo_id not in hub.refs:
                return self._error(404, "RepoNotFound", "Repository not found")
            header = lines[0]["value"] if lines and lines[0].get("key") == "header" else {}
            files, deleted = {}, []
            for line in lines[1:]:
                if line["key"] == "file":
                    files[line["value"]["path"]] = base64.b64decode(line["value"]["content"])
                elif line["key"] == "deletedFile":
                    deleted.append(line["value"]["path"])
                else:  # lfsFile / deletedFolder: never produced while preupload says "regular"
                    return self._error(400, None, f"operation {line['key']} is not supported by this test server")
            try:
                sha = hub.commit(repo_id, files, deleted, branch=branch, parent=header.get("parentCommit"))
            except ValueError as e:
                return self._error(412, None, str(e))
            self._json(200, {"success": True, "commitOid": sha, "commitUrl": f"{hub.url}/{repo_id}/commit/{sha}"})

    return Handler
