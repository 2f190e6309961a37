"""Loading the vision models the metrics and CLIP similarity use, from the usual caches or a given path.

Weights are never downloaded implicitly in a build: when they are not in the Hugging Face / torch hub cache
(or at a configured path), loading raises WeightsUnavailable, which functions turn into a NULL with reason
"weights unavailable". Tests exercise the same code with `random_weights=True` (architecture, no weights).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

_LOCK = threading.Lock()


class WeightsUnavailable(RuntimeError):
    """The model's weights are not in any local cache; the run stays offline instead of downloading them."""


@dataclass(frozen=True)
class ClipBundle:
    model: Any  # open_clip model, eval mode
    preprocess: Any  # PIL image -> tensor
    tokenizer: Any
    name: str  # e.g. "ViT-B-32/openai" or "ViT-B-32/random"
    image_size: int


OPEN_CLIP_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def cached_clip_weights(model_name: str, pretrained: str) -> str | None:
    """The local file of open_clip's `pretrained` weights, if the Hugging Face or open_clip cache has it."""
    if not _any_clip_weights():
        return None  # without importing open_clip (and torch), which takes seconds
    import open_clip
    from huggingface_hub import try_to_load_from_cache

    config = open_clip.get_pretrained_cfg(model_name, pretrained)
    repo = (config or {}).get("hf_hub", "").strip("/")
    for filename in OPEN_CLIP_FILES:
        found = try_to_load_from_cache(repo, filename) if repo else None
        if isinstance(found, str):
            return found
    url = (config or {}).get("url", "")
    legacy = Path(os.path.expanduser("~/.cache/clip")) / url.rsplit("/", 1)[-1] if url else None
    return str(legacy) if legacy is not None and legacy.is_file() else None


def _any_clip_weights() -> bool:
    """Whether any open_clip weights file is in the Hugging Face cache or any file in open_clip's legacy cache."""
    from huggingface_hub.constants import HF_HUB_CACHE

    hub = Path(HF_HUB_CACHE)
    if hub.is_dir() and any(next(hub.glob(f"models--*/snapshots/*/{name}"), None) for name in OPEN_CLIP_FILES):
        return True
    legacy = Path(os.path.expanduser("~/.cache/clip"))
    return legacy.is_dir() and any(path.is_file() for path in legacy.iterdir())


def load_clip(model_name: str = "ViT-B-32", pretrained: str | None = "openai", *, weights_path: str | None = None,
              random_weights: bool = False, device: str = "cpu") -> ClipBundle:
    """An open_clip model: from `weights_path`, from the local cache for `pretrained`, or random (tests)."""
    return _load_clip(model_name, pretrained, weights_path, random_weights, device)


@cache
def _load_clip(model_name: str, pretrained: str | None, weights_path: str | None, random_weights: bool,
               device: str) -> ClipBundle:
    local = None
    if not random_weights:  # checked before importing open_clip and torch, which take seconds
        local = weights_path or (cached_clip_weights(model_name, pretrained) if pretrained else None)
        if local is None or not Path(local).is_file():
            raise WeightsUnavailable(f"CLIP weights {model_name}/{weights_path or pretrained} are not in the "
                                     "local caches; put them in the Hugging Face cache or set a weights path")
    import open_clip
    import torch

    with _LOCK:
        if random_weights:
            torch.manual_seed(0)
            model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=None, device=device)
            label = f"{model_name}/random"
        else:
            # OpenAI's CLIP weights were trained with QuickGELU: loading them from a file path must say so
            quick = bool((open_clip.get_pretrained_cfg(model_name, pretrained) or {}).get("quick_gelu")) \
                if pretrained else False
            model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=local, device=device,
                                                                         force_quick_gelu=quick)
            label = f"{model_name}/{pretrained or Path(local).name}"
        model.eval()
        tokenizer = open_clip.get_tokenizer(model_name)
    size = model.visual.image_size
    return ClipBundle(model=model, preprocess=preprocess, tokenizer=tokenizer, name=label,
                      image_size=size[0] if isinstance(size, tuple | list) else int(size))


def alexnet_weights_cached() -> bool:
    """torchvision's AlexNet weights (the LPIPS backbone) in the torch hub cache (found without importing torch)."""
    hub = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "torch")
    checkpoints = Path(hub) / "hub" / "checkpoints"
    return any(checkpoints.glob("alexnet-*.pth")) if checkpoints.is_dir() else False


def load_lpips(*, random_backbone: bool = False, device: str = "cpu") -> Any:
    """LPIPS with AlexNet: the linear layers ship inside the lpips package; the backbone must be cached."""
    return _load_lpips(random_backbone, device)


@cache
def _load_lpips(random_backbone: bool, device: str) -> Any:
    if not random_backbone and not alexnet_weights_cached():
        raise WeightsUnavailable("AlexNet weights for LPIPS are not in the torch hub cache (hub/checkpoints)")
    import lpips  # imported only once the weights are known to be there: it takes seconds
    import torch

    with _LOCK:
        if random_backbone:
            torch.manual_seed(0)
        model = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=random_backbone, verbose=False)
    return model.eval().to(device)
