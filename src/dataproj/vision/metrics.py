"""Unedited-area metrics of an image edit as SQL functions: ssim(a, b, boxes), lpips(a, b, boxes),
emd(a, b, boxes), and unedit_area(...) with all three and the reason for each one it skips.

The definitions are the edit-annotation reference's (REFERENCE.md §3). Images are capped at 2048 px, the edited
image is resized to the source's size, and the unedited mask is 1 outside every box (vision.images).

Each metric lives in its own module: vision.ssim (one Gaussian pass over a stacked batch), vision.lpips_metric
(one AlexNet forward per batch), vision.emd (CLIP patch tokens, POT's ot.emd2).

Weights are never downloaded: `weights='pretrained'` uses the local caches (dataproj.vision.models) and, where
they are missing, the metric is NULL with reason "weights unavailable". `weights='random'` runs the same code
with a randomly initialised backbone, for tests and benchmarks only: its values mean nothing about quality.

unedit_area() is in the durable call cache (keyed by the images' content, the boxes, the metrics and the
weights), except for results with a metric NULL for missing weights: those are computed again, so installing
the weights fills them in. The scalar ssim() / lpips() / emd() are not cached. What is expensive and shared
(decoded images, CLIP patch tokens) is memoised in the process by content hash.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from ..runtime.images import ImageError
from ..runtime.spec import udf
from ..runtime.types import ImagePath
from .emd import clip_model, emd_values
from .images import Box, EditPair, MetricValue, load_pair
from .lpips_metric import lpips_model, lpips_values
from .ssim import ssim_values

METRICS = ("lpips", "emd", "ssim")
WEIGHTS = ("pretrained", "random")
NO_BOX = "no box found"
NO_WEIGHTS = "weights unavailable"
NOT_CONFIGURED = "not configured"


class UneditArea(BaseModel):
    """unedit_area(...): the three metrics, and for each one that is NULL the reason."""

    lpips: float | None = None
    emd: float | None = None
    ssim: float | None = None
    lpips_reason: str | None = None
    emd_reason: str | None = None
    ssim_reason: str | None = None


# ---- rows to pairs ----------------------------------------------------------------------------------------


def _load_rows(sources: Sequence[str | None], editeds: Sequence[str | None],
               boxes: Sequence[Sequence[Box] | None]) -> list[EditPair | str]:
    """An EditPair per row, or the reason it has none (a NULL input, an unreadable file, a bad box)."""
    rows: list[EditPair | str] = []
    for source, edited, row_boxes in zip(sources, editeds, boxes, strict=True):
        if source is None or edited is None:
            rows.append("failed call: no source or edited image")
        elif row_boxes is None:
            rows.append(NO_BOX)
        else:
            try:
                rows.append(load_pair(source, edited, row_boxes))
            except (ImageError, ValueError) as err:
                rows.append(f"failed call: {err}")
    return rows


def _metric_model(metric: str, weights: str) -> tuple[Any, str | None]:
    """The model a metric needs (None for SSIM), or the reason it cannot run."""
    from .models import WeightsUnavailable

    if metric == "ssim":
        return None, None
    try:
        return (lpips_model(weights) if metric == "lpips" else clip_model(weights)), None
    except WeightsUnavailable:
        return None, NO_WEIGHTS


def compute_metric(metric: str, pairs: Sequence[EditPair], weights: str) -> list[MetricValue]:
    """One metric over loaded pairs, batched."""
    if metric == "ssim":
        return ssim_values(pairs)
    model, reason = _metric_model(metric, weights)
    if model is None:
        return [(None, reason)] * len(pairs)
    return lpips_values(pairs, model) if metric == "lpips" else emd_values(pairs, model)


def _scalar(metric: str, a: Sequence[str | None], b: Sequence[str | None],
            boxes: Sequence[Sequence[Box] | None]) -> list[float | None]:
    rows = _load_rows(a, b, boxes)
    loaded = [i for i, row in enumerate(rows) if isinstance(row, EditPair)]
    values: list[float | None] = [None] * len(rows)
    computed = compute_metric(metric, [rows[i] for i in loaded], "pretrained") if loaded else []
    for i, (value, _) in zip(loaded, computed, strict=True):
        values[i] = value
    return values


Boxes = list[list[float]] | None


@udf(kind="batch", batch_size=256)
def ssim(a: list[ImagePath], b: list[ImagePath], boxes: list[Boxes]) -> list[float | None]:
    """SSIM of the unedited area (outside every pixel box [x1, y1, x2, y2] of `a`); NULL boxes give NULL."""
    return _scalar("ssim", a, b, boxes)


@udf(kind="batch", batch_size=64)
def lpips(a: list[ImagePath], b: list[ImagePath], boxes: list[Boxes]) -> list[float | None]:
    """LPIPS (AlexNet) of the unedited area, divided by its fraction; NULL when the weights are not cached."""
    return _scalar("lpips", a, b, boxes)


@udf(kind="batch", batch_size=64)
def emd(a: list[ImagePath], b: list[ImagePath], boxes: list[Boxes]) -> list[float | None]:
    """EMD of CLIP ViT-B/32 patch tokens, source vs unedited edited patches; NULL when the weights are not cached."""
    return _scalar("emd", a, b, boxes)


def _weights_were_there(area: dict[str, Any]) -> bool:
    """A result is kept in the call cache unless a metric is NULL only because its weights are not installed."""
    return all(area.get(f"{m}_reason") != NO_WEIGHTS for m in METRICS)


@udf(kind="batch", batch_size=64, cached=True, version="1", store_if=_weights_were_there)
def unedit_area(source: list[ImagePath], edited: list[ImagePath], boxes: list[Boxes],
                metrics: list[list[str] | None], weights: list[str | None]) -> list[UneditArea]:
    """lpips, emd and ssim of the unedited area, and why any of them is NULL; `metrics` picks which to compute,
    `weights` is 'pretrained' (the local caches) or 'random' (tests only)."""
    rows = _load_rows(source, edited, boxes)
    results = [{**EMPTY_RESULT, **_unloaded(row)} for row in rows]
    for (metric, mode), indices in _plan(rows, metrics, weights, results).items():
        try:
            values = compute_metric(metric, [rows[i] for i in indices], mode)  # type: ignore[misc]
        except Exception as err:  # one metric failing (a model error) leaves the others and the run standing
            message = f"{metric}: {type(err).__name__}: {err}"
            values = [(None, f"failed call: {message}")] * len(indices)
            for i in indices:
                results[i].update(status="failed", error=message)
        for i, (value, reason) in zip(indices, values, strict=True):
            results[i][metric] = value
            results[i][f"{metric}_reason"] = reason
    return results  # type: ignore[return-value]


EMPTY_RESULT = UneditArea().model_dump()


def _unloaded(row: EditPair | str) -> dict[str, Any]:
    """The reasons of a row that has no pair; a row that could not be read is a failed call."""
    if isinstance(row, EditPair):
        return {}
    if row == NO_BOX:
        return {f"{m}_reason": NO_BOX for m in METRICS}
    return {**{f"{m}_reason": row for m in METRICS}, "status": "failed", "error": row.removeprefix("failed call: ")}


def _plan(rows: list[EditPair | str], metrics: Sequence[list[str] | None], weights: Sequence[str | None],
          results: list[dict[str, Any]]) -> dict[tuple[str, str], list[int]]:
    """Which rows each (metric, weights) computes; rows that ask for something unknown fail with the reason."""
    plan: dict[tuple[str, str], list[int]] = {}
    for i, (row, wanted, mode) in enumerate(zip(rows, metrics, weights, strict=True)):
        if not isinstance(row, EditPair):
            continue
        wanted = list(METRICS) if wanted is None else wanted
        problem = _check_request(wanted, mode)
        if problem is not None:
            results[i].update({**{f"{m}_reason": problem for m in METRICS}, "status": "failed", "error": problem})
            continue
        for metric in METRICS:
            if metric in wanted:
                plan.setdefault((metric, mode or "pretrained"), []).append(i)
            else:
                results[i][f"{metric}_reason"] = NOT_CONFIGURED
    return plan


def _check_request(wanted: Sequence[str], mode: str | None) -> str | None:
    unknown = [m for m in wanted if m not in METRICS]
    if unknown:
        return f"unknown metric(s) {unknown}; use {', '.join(METRICS)}"
    if mode is not None and mode not in WEIGHTS:
        return f"weights must be one of {', '.join(WEIGHTS)}, got {mode!r}"
    return None

