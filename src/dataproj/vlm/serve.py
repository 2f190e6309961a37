"""The offline backend behind real API endpoints: a LocalVLMServer whose answers come from the offline
answerers, so the openai and google-genai SDKs can be exercised end to end with no key and no network
(`dataproj vlm-server`, the tests and the benchmarks)."""

from __future__ import annotations

import hashlib
import json
import tempfile
import threading
from pathlib import Path

from .local_server import LocalVLMServer, ParsedRequest
from .offline import answer
from .prompts import PromptAsset, PromptStore


class OfflineAnswerer:
    """Finds the prompt asset a request was rendered from (by its system prompt) and answers it offline."""

    def __init__(self, store: PromptStore, scratch: Path | None = None) -> None:
        self.assets = [asset for versions in store.assets.values() for asset in versions.values()]
        self.scratch = scratch or Path(tempfile.mkdtemp(prefix="dataproj-vlm-"))
        self._lock = threading.Lock()

    def __call__(self, request: ParsedRequest) -> str:
        asset = self.asset_for(request.system)
        paths = [self._saved(image) for image in request.images]
        value = answer(asset.spec.family, request.system, list(request.texts), paths, request.schema,
                       asset.spec.box_convention)
        return json.dumps(value, ensure_ascii=False)

    def asset_for(self, system: str) -> PromptAsset:
        for asset in self.assets:
            static = asset.spec.system_prompt.split("{{")[0].split("{%")[0].strip()
            if static and system.strip().startswith(static[:400]):
                return asset
        raise ValueError("no prompt asset has this system prompt; the offline server answers the project's prompts")

    def _saved(self, image: bytes) -> str:
        """Answerers analyse files: keep each distinct image once, named by its content hash."""
        path = self.scratch / (hashlib.sha256(image).hexdigest() + ".img")
        with self._lock:
            if not path.exists():
                path.write_bytes(image)
        return str(path)


def offline_server(prompts_dir: Path | None, *, latency_s: float = 0.0, port: int = 0,
                   host: str = "127.0.0.1") -> LocalVLMServer:
    """A LocalVLMServer answering the engine's and the project's prompts from the offline backend."""
    return LocalVLMServer(OfflineAnswerer(PromptStore(prompts_dir)), latency_s=latency_s, port=port, host=host)
