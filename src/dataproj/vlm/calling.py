"""One prompt call: render the asset, ask a backend, validate the answer (re-asking on invalid output), and
convert boxes to pixels. Usage of every attempt goes to the call ledger."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ValidationError

from ..runtime.executor import RowFailure
from ..runtime.ledger import record_usage
from .boxes import BoxError, to_pixels
from .checks import check_answer
from .clients import VLMReply, VLMRequest, make_client
from .prompts import PromptAsset
from .schema import extract_json, strict_json_schema
from .settings import VLMBackend

REASK = ("Your previous answer could not be used: {problem}. "
         "Answer again: valid JSON for the schema, following every instruction.")


class ClientPool:
    """One client per backend and model, made on first use (a missing key only matters when it is used)."""

    def __init__(self, settings: dict[str, VLMBackend]) -> None:
        self.settings = settings
        self._clients: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def get(self, backend: str, settings: VLMBackend | None = None) -> Any:
        """The client for `backend`, with `settings` when a prompt overrides them (e.g. its model)."""
        settings = settings or self.settings[backend]
        key = (backend, settings.model)
        with self._lock:
            if key not in self._clients:
                self._clients[key] = make_client(settings)
            return self._clients[key]


def request_for(asset: PromptAsset, values: dict[str, Any], temperature: float | None = None) -> VLMRequest:
    system, parts = asset.render(values)
    return VLMRequest(system=system, parts=tuple(parts), schema=_schema(asset.output_model),
                      schema_name=asset.spec.output_schema.name, family=asset.spec.family,
                      box_convention=asset.spec.box_convention,
                      temperature=temperature if temperature is not None else asset.spec.parameters.get("temperature"))


@lru_cache(maxsize=256)
def _schema(model: type[BaseModel]) -> dict[str, Any]:
    return strict_json_schema(model)


def ask(client: Any, request: VLMRequest) -> VLMReply:
    """One real call; its usage is attached to the ledger row of the call being made."""
    reply = client.complete(request)
    record_usage(model=reply.model, input_tokens=reply.input_tokens, cached_input_tokens=reply.cached_input_tokens,
                 output_tokens=reply.output_tokens, raw_response=reply.text)
    return reply


def ask_until_valid(client: Any, request: VLMRequest, attempts: int,
                    parse: Callable[[str], Any]) -> tuple[Any, str]:
    """Ask, parse; re-ask on output that does not parse or breaks a check, saying what was wrong.
    Raises RowFailure with the last raw answer."""
    raw, problem = "", "no answer"
    asked = request
    for _ in range(max(1, attempts)):
        raw = ask(client, asked).text
        try:
            return parse(raw), raw
        except (ValueError, ValidationError, BoxError) as err:
            problem = _short(err)
        asked = replace(request, parts=(*request.parts, REASK.format(problem=problem)))
    raise RowFailure(f"invalid output after {max(1, attempts)} attempt(s): {problem}", raw_response=raw)


def _short(err: Exception) -> str:
    if isinstance(err, ValidationError):
        first = err.errors()[0]
        return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
    return str(err)


def parse_output(asset: PromptAsset, raw: str, values: dict[str, Any]) -> dict[str, Any]:
    """Validate the answer against the asset's output model and checks, and convert its boxes to pixel xyxy."""
    data = asset.output_model.model_validate(extract_json(raw)).model_dump(mode="json")
    check_answer(asset.spec.output_checks, data, values)
    if asset.spec.box_fields:
        width, height = _image_size(_boxes_image(asset, values))
        for path in asset.spec.box_fields:
            _convert(data, path.split("."), asset.spec.box_convention or "pixel_xyxy", width, height)
    return data


def _boxes_image(asset: PromptAsset, values: dict[str, Any]) -> str:
    name = asset.spec.boxes_on or asset.image_inputs[0]
    value = values.get(name)
    if isinstance(value, list):
        value = value[0] if value else None
    if value is None:
        raise ValueError(f"no image in {name!r} to size the boxes")
    return value


@lru_cache(maxsize=4096)
def _image_size(path: str) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        return image.size


def _convert(node: Any, steps: list[str], convention: str, width: int, height: int) -> None:
    """Walk a path like ["groundings[]", "bboxes[]"] and convert each box found, in place."""
    step, rest = steps[0], steps[1:]
    key, each = (step[:-2], True) if step.endswith("[]") else (step, False)
    if not isinstance(node, dict) or node.get(key) is None:
        return
    if not rest:
        if each:
            node[key] = [to_pixels(box, convention, width, height) for box in node[key]]
        else:
            node[key] = to_pixels(node[key], convention, width, height)
        return
    for child in (node[key] if each else [node[key]]):
        _convert(child, rest, convention, width, height)
