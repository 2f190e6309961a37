"""A local stand-in for the Hugging Face Hub's upload API, so that `dataproj publish hf` can be exercised end to
end with the real huggingface_hub client and no network (point HF_ENDPOINT at it; set HF_HUB_DISABLE_XET=1,
since it speaks the Git LFS protocol, not Xet).

It implements what HfApi.create_repo and HfApi.create_commit use: POST /api/repos/create, /api/validate-yaml,
/api/{type}s/{repo}/preupload/{rev}, the LFS batch endpoint {type}s/{repo}.git/info/lfs/objects/batch with
basic PUT uploads, and /api/{type}s/{repo}/commit/{rev} (NDJSON). Files above `lfs_threshold` bytes are asked
for as LFS, smaller ones travel base64 inside the commit, as on the Hub. Every request is recorded with its
Authorization header; the files of each repo are kept in memory.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit


@dataclass
class HubRequest:
    method: str
    path: str
    authorization: str | None


@dataclass
class HubRepo:
    repo_id: str
    repo_type: str
    private: bool
    files: dict[str, bytes] = field(default_factory=dict)
    commits: list[dict[str, Any]] = field(default_factory=list)


_REPO = r"(?P<type>datasets|models|spaces)/(?P<repo>[^/]+/[^/]+)"


class LocalHub:
    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, token: str | None = None,
                 lfs_threshold: int = 10_000) -> None:
        self.host, self.port = host, port
        self.token = token  # when set, requests without "Bearer <token>" get 401
        self.lfs_threshold = lfs_threshold
        self.requests: list[HubRequest] = []
        self.repos: dict[str, HubRepo] = {}
        self.lfs_objects: dict[str, bytes] = {}
        self.lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> LocalHub:
        hub = self

        class Handler(_Handler):
            server_hub = hub

        self._httpd = ThreadingHTTPServer((self.host, self.port), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name=f"local-hub:{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> LocalHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- the API ------------------------------------------------------------------------------------------------

    def create_repo(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        kind = body.get("type") or "model"
        repo_id = f"{body['organization']}/{body['name']}" if body.get("organization") else body["name"]
        key = f"{kind}s/{repo_id}"
        with self.lock:
            if key in self.repos:
                return 409, {"error": "You already created this repo", "url": self._repo_url(kind, repo_id)}
            self.repos[key] = HubRepo(repo_id, kind, body.get("visibility") == "private" or bool(body.get("private")))
        return 200, {"url": self._repo_url(kind, repo_id), "name": repo_id}

    def _repo_url(self, kind: str, repo_id: str) -> str:
        return f"{self.url}/{'' if kind == 'model' else kind + 's/'}{repo_id}"

    def preupload(self, key: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if key not in self.repos:
            return 404, {"error": f"Repository {key} not found"}
        files = [{"path": f["path"], "uploadMode": "lfs" if f["size"] > self.lfs_threshold else "regular",
                  "shouldIgnore": False} for f in body["files"]]
        return 200, {"files": files, "commitOid": "0" * 40}

    def lfs_batch(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        objects = []
        for item in body.get("objects", []):
            known = item["oid"] in self.lfs_objects
            actions = None if known else {"upload": {"href": f"{self.url}/lfs-upload/{item['oid']}", "header": {}}}
            objects.append({"oid": item["oid"], "size": item["size"], "authenticated": True,
                            **({"actions": actions} if actions else {})})
        return 200, {"transfer": "basic", "objects": objects}

    def lfs_upload(self, oid: str, data: bytes) -> tuple[int, dict[str, Any]]:
        if hashlib.sha256(data).hexdigest() != oid:
            return 400, {"error": "sha256 of the uploaded bytes does not match the oid"}
        with self.lock:
            self.lfs_objects[oid] = data
        return 200, {}

    def commit(self, key: str, lines: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
        repo = self.repos.get(key)
        if repo is None:
            return 404, {"error": f"Repository {key} not found"}
        header: dict[str, Any] = {}
        added: dict[str, bytes] = {}
        for line in lines:
            value = line["value"]
            if line["key"] == "header":
                header = value
            elif line["key"] == "file":
                added[value["path"]] = base64.b64decode(value["content"])
            elif line["key"] == "lfsFile":
                if value["oid"] not in self.lfs_objects:
                    return 400, {"error": f"LFS object {value['oid']} of {value['path']} was never uploaded"}
                added[value["path"]] = self.lfs_objects[value["oid"]]
            elif line["key"] in ("deletedFile", "deletedFolder"):
                repo.files = {p: b for p, b in repo.files.items()
                              if p != value["path"] and not p.startswith(value["path"].rstrip("/") + "/")}
        oid = hashlib.sha1(json.dumps([header, sorted(added)]).encode() + bytes(len(repo.commits))).hexdigest()
        with self.lock:
            repo.files.update(added)
            repo.commits.append({"oid": oid, "summary": header.get("summary"), "files": sorted(added)})
        return 200, {"commitUrl": f"{self._repo_url(repo.repo_type, repo.repo_id)}/commit/{oid}", "commitOid": oid,
                     "pullRequestUrl": None, "success": True}


class _Handler(BaseHTTPRequestHandler):
    server_hub: LocalHub

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        return

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _reply(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        hub = self.server_hub
        authorization = self.headers.get("Authorization")
        with hub.lock:
            hub.requests.append(HubRequest(self.command, urlsplit(self.path).path, authorization))
        if hub.token is not None and authorization != f"Bearer {hub.token}":
            self._reply(401, {"error": "Invalid credentials in Authorization header"})
            return False
        return True

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        if not self._authorized():
            return
        hub, path, body = self.server_hub, unquote(urlsplit(self.path).path), self._body()
        if path == "/api/repos/create":
            self._reply(*hub.create_repo(json.loads(body)))
        elif path == "/api/validate-yaml":
            self._reply(200, {"errors": [], "warnings": []})
        elif match := re.fullmatch(rf"/api/{_REPO}/preupload/[^/]+", path):
            self._reply(*hub.preupload(f"{match['type']}/{match['repo']}", json.loads(body)))
        elif match := re.fullmatch(rf"/api/{_REPO}/commit/[^/]+", path):
            lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
            self._reply(*hub.commit(f"{match['type']}/{match['repo']}", lines))
        elif re.fullmatch(rf"/{_REPO}\.git/info/lfs/objects/batch", path):
            self._reply(*hub.lfs_batch(json.loads(body)))
        else:
            self._reply(404, {"error": f"the local hub does not serve POST {path}"})

    def do_PUT(self) -> None:  # noqa: N802
        hub, path = self.server_hub, urlsplit(self.path).path
        with hub.lock:
            hub.requests.append(HubRequest("PUT", path, self.headers.get("Authorization")))
        if match := re.fullmatch(r"/lfs-upload/(?P<oid>[0-9a-f]{64})", path):
            self._reply(*hub.lfs_upload(match["oid"], self._body()))
        else:
            self._reply(404, {"error": f"the local hub does not serve PUT {path}"})
