"""LPIPS of the unedited area: the lpips package's AlexNet LPIPS of edited*mask + source*(1-mask) against the
source, inputs in [-1, 1], divided by the unedited fraction. Batched: one AlexNet forward over the composites
and the distinct sources of a batch (channels-last memory, which CPUs convolve about twice as fast).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from .images import NO_UNEDITED_AREA, EditPair, MetricValue, chunks_by_size

LPIPS_CHUNK_PIXELS = 4 * 512 * 512  # source pixels per AlexNet forward (composites and their sources)


_PREPARED: dict[str, Any] = {}
_MODEL_LOCK = threading.Lock()


def lpips_model(weights: str) -> Any:
    """The lpips package's AlexNet LPIPS, its backbone in channels-last memory; WeightsUnavailable if missing."""
    from .models import load_lpips

    model = load_lpips(random_backbone=weights == "random")
    key = f"lpips/{weights}/{id(model)}"
    with _MODEL_LOCK:
        if key not in _PREPARED:
            import torch

            prepared = copy.deepcopy(model).eval()  # the shared model keeps its memory format
            prepared.net = prepared.net.to(memory_format=torch.channels_last)
            _PREPARED[key] = prepared
        return _PREPARED[key]


def _to_unit_range(pixels: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(np.array(pixels)).permute(2, 0, 1).to(torch.float32) / 127.5 - 1.0


def lpips_distances(model: Any, composites: Any, sources: Any, index: Any) -> list[float]:
    """LPIPS(composites[i], sources[index[i]]) as lpips.LPIPS.forward computes it (version 0.1, not spatial).

    composites (n, 3, h, w) and sources (m, 3, h, w) are in [-1, 1]; one AlexNet forward covers both, so a
    source shared by several pairs is encoded once. The per-layer distances are taken pair by pair: at that
    size the normalised features stay in the CPU cache."""
    import lpips as lpips_package
    import torch

    count = composites.shape[0]
    batch = torch.cat([composites, sources]).contiguous(memory_format=torch.channels_last)
    features = [lpips_package.normalize_tensor(f) for f in model.net.forward(model.scaling_layer(batch))]
    distances = []
    for position in range(count):
        total = 0.0
        for layer, feature in enumerate(features):
            diff = (feature[position:position + 1] - feature[count + int(index[position])][None]) ** 2
            total += float(model.lins[layer](diff).mean())
        distances.append(total)
    return distances


def _composite_is_source(pair: EditPair) -> bool:
    """edited*mask + source*(1-mask) equals the source: the edit stayed inside the boxes."""
    unedited = pair.mask > 0
    return not bool(((pair.edited != pair.source).any(axis=2) & unedited).any())


def lpips_values(pairs: Sequence[EditPair], model: Any) -> list[MetricValue]:
    """LPIPS of edited*mask + source*(1-mask) against the source, divided by the unedited fraction.

    Where the composite is the source itself, LPIPS is 0 (identical inputs) without an AlexNet pass."""
    import torch

    results: list[MetricValue] = [(None, NO_UNEDITED_AREA)] * len(pairs)
    usable = []
    for i, pair in enumerate(pairs):
        if pair.unedited_fraction > 0 and _composite_is_source(pair):
            results[i] = (0.0, None)
        elif pair.unedited_fraction > 0:
            usable.append(i)
    with torch.inference_mode():
        for chunk in chunks_by_size([pairs[i] for i in usable], LPIPS_CHUNK_PIXELS):
            indices = [usable[i] for i in chunk]
            source_of: dict[str, int] = {}
            for i in indices:
                source_of.setdefault(pairs[i].source_key, i)
            order = {key: position for position, key in enumerate(source_of)}
            composites = []
            for i in indices:
                mask = torch.from_numpy(pairs[i].mask)
                composites.append(_to_unit_range(pairs[i].edited) * mask + _to_unit_range(pairs[i].source) * (1 - mask))
            sources = torch.stack([_to_unit_range(pairs[i].source) for i in source_of.values()])
            index = [order[pairs[i].source_key] for i in indices]
            for i, distance in zip(indices, lpips_distances(model, torch.stack(composites), sources, index),
                                   strict=True):
                results[i] = (distance / pairs[i].unedited_fraction, None)
    return results
