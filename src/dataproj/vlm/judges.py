"""The judges of the edit-annotation reference as SQL functions: pairwise_judge and viescore.

pairwise_judge(instruction, input_image, image_a, image_b)
    -> {type: 'pairwise_comparison', value: 'Image A' | 'Image B' | 'Tie' | 'Failed', meta: {raw_response}}
viescore(instruction, input_image, edited_images)
    one image  -> {type: 'single_score', value: '<score>' | 'Failed', meta: {vie_score: [s], raw_response}}
    two images -> {type: 'pairwise_comparison', value: 'Image A' | 'Image B' | 'Tie' | 'Failed',
                   meta: {vie_score: [a, b], raw_response: {edited_image_0: ..., edited_image_1: ...}}}
Failures are soft, as in the reference: value 'Failed' with the raw responses kept (and status 'failed', so
--retry-failed retries them).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from ..runtime.executor import RowFailure
from ..runtime.spec import FunctionSpec, build_spec
from ..runtime.types import ImagePath
from .calling import ClientPool, ask_until_valid, request_for
from .functions import answer_config, with_signature
from .prompts import PromptAsset
from .schema import extract_json
from .settings import VLMBackend

_ALIASES = {"image_a": "Image A", "image a": "Image A", "a": "Image A",
            "image_b": "Image B", "image b": "Image B", "b": "Image B",
            "tie": "Tie", "equal": "Tie", "both": "Tie", "none": "Tie"}
FAILED = "Failed"


class PairwiseMeta(BaseModel):
    raw_response: str | None = None


class PairwiseResult(BaseModel):
    type: str
    value: str
    meta: PairwiseMeta


class VieMeta(BaseModel):
    vie_score: list[float | None]
    raw_response: dict[str, str | None]


class VieScoreResult(BaseModel):
    type: str
    value: str
    meta: VieMeta


def normalize_winner(winner: Any) -> str | None:
    """'Image A', 'Image B' or 'Tie' from the aliases the reference accepts; None when it is none of them."""
    if not isinstance(winner, str):
        return None
    return _ALIASES.get(winner.strip().lower())


def parse_vie_score(data: dict[str, Any], prompt_id: str) -> float:
    """v1: the scalar; v2 (a list): instruction_following -> score[0], visual_quality -> min, else score[1]."""
    score = data["score"]
    if isinstance(score, list):
        if "instruction_following" in prompt_id:
            return float(score[0])
        if "visual_quality" in prompt_id:
            return float(min(score))
        return float(score[1])
    return float(score)


def _winner_of(raw: str) -> str:
    data = extract_json(raw)
    if not isinstance(data, dict):
        raise ValueError('the answer is not a JSON object with "winner"')
    winner = normalize_winner(data.get("winner"))
    if winner is None:
        raise ValueError("the winner is not Image A, Image B or Tie")
    return winner


def pairwise_judge_function(asset: PromptAsset, backend: str, settings: VLMBackend, pool: ClientPool,
                            temperature: float | None) -> FunctionSpec:
    names = ["instruction", "input_image", "image_a", "image_b"]

    def judge(instruction: str, input_image: str, image_a: str, image_b: str) -> dict[str, Any]:
        values = {"instruction": instruction, "input_image": input_image, "edited_images": [image_a, image_b]}
        request = request_for(asset, values, temperature)
        try:
            winner, raw = ask_until_valid(pool.get(backend, settings), request, settings.output_retries + 1, _winner_of)
        except RowFailure as failure:
            return {"type": "pairwise_comparison", "value": FAILED, "meta": {"raw_response": failure.raw_response},
                    "status": "failed", "error": str(failure), "raw_response": failure.raw_response}
        return {"type": "pairwise_comparison", "value": winner, "meta": {"raw_response": raw}, "raw_response": raw}

    hints = {"instruction": str, "input_image": ImagePath, "image_a": ImagePath, "image_b": ImagePath,
             "return": PairwiseResult}
    return build_spec(with_signature(lambda *a: judge(*a), names), name=asset.function_name, kind="io", cached=True,
                      version=asset.version, backend=backend, hints=hints,
                      config=answer_config(asset, backend, settings, temperature))


def viescore_function(asset: PromptAsset, backend: str, settings: VLMBackend, pool: ClientPool,
                      temperature: float | None) -> FunctionSpec:
    names = ["instruction", "input_image", "edited_images"]

    def score_one(instruction: str, input_image: str, edited: str) -> tuple[float | None, str | None, str | None]:
        values = {"instruction": instruction, "input_image": input_image, "edited_images": [edited]}
        request = request_for(asset, values, temperature)
        try:
            score, raw = ask_until_valid(pool.get(backend, settings), request, settings.output_retries + 1,
                                         lambda text: parse_vie_score(_validated(asset, text), asset.prompt_id))
        except RowFailure as failure:
            return None, failure.raw_response, str(failure)
        return score, raw, None

    def viescore(instruction: str, input_image: str, edited_images: list[str]) -> dict[str, Any]:
        if not edited_images or len(edited_images) > 2:
            raise RowFailure(f"viescore takes one or two edited images, got {len(edited_images or [])}")
        results = [score_one(instruction, input_image, edited) for edited in edited_images]
        scores = [r[0] for r in results]
        raws = {f"edited_image_{i}": r[1] for i, r in enumerate(results)}
        errors = [r[2] for r in results if r[2]]
        meta = {"vie_score": scores, "raw_response": raws}
        kind = "single_score" if len(scores) == 1 else "pairwise_comparison"
        if errors:
            return {"type": kind, "value": FAILED, "meta": meta, "status": "failed", "error": "; ".join(errors),
                    "raw_response": json.dumps(raws)}
        if len(scores) == 1:
            value = f"{scores[0]:g}"
        else:
            value = "Tie" if scores[0] == scores[1] else ("Image A" if scores[0] > scores[1] else "Image B")
        return {"type": kind, "value": value, "meta": meta, "raw_response": json.dumps(raws)}

    hints = {"instruction": str, "input_image": ImagePath, "edited_images": list[ImagePath], "return": VieScoreResult}
    return build_spec(with_signature(lambda *a: viescore(*a), names), name=asset.function_name, kind="io",
                      cached=True, version=asset.version, backend=backend, hints=hints,
                      config=answer_config(asset, backend, settings, temperature))


def _validated(asset: PromptAsset, text: str) -> dict[str, Any]:
    return asset.output_model.model_validate(extract_json(text)).model_dump(mode="json")


JUDGE_MAKERS = {"pairwise_judge": pairwise_judge_function, "viescore": viescore_function}
