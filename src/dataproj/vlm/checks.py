"""Output checks: rules an answer must follow that a JSON schema cannot say, some of them against the call's
own inputs (a judge must label exactly the candidates it was given). A broken rule is invalid output: it is
asked again with the problem named, and fails the row after the last attempt, so `--retry-failed` retries it.

Paths walk the answer (or an argument, JSON arguments parsed): "judgments[].image_id" is the image_id of each
item of the judgments list, "tags[]" the items of tags.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from .prompts import OutputCheck, as_data

SHOWN = 5  # values named in a message before "and N more"


class CheckFailed(ValueError):
    """An answer broke one of its prompt's output checks."""


def values_at(node: Any, path: str) -> list[Any]:
    """Every value at `path` in `node`; a missing key or a null contributes nothing."""
    found = [node]
    for step in path.split("."):
        key, each = (step[:-2], True) if step.endswith("[]") else (step, False)
        found = [item.get(key) for item in found if isinstance(item, dict)]
        if each:
            found = [element for item in found if isinstance(item, list) for element in item]
        found = [item for item in found if item is not None]
    return found


def check_answer(checks: list[OutputCheck], answer: dict[str, Any], inputs: dict[str, Any]) -> None:
    """Raise CheckFailed naming every broken rule."""
    problems = [problem for check in checks for problem in [_problem(check, answer, inputs)] if problem]
    if problems:
        raise CheckFailed("; ".join(problems))


def _problem(check: OutputCheck, answer: dict[str, Any], inputs: dict[str, Any]) -> str | None:
    given = Counter(_key(v) for v in values_at(answer, check.answer))
    repeated = sorted((v for v, n in given.items() if n > 1), key=str)
    if check.kind == "distinct":
        return f"{check.answer} repeats {_listed(repeated)}" if repeated else None
    assert check.input is not None
    name = check.input.split(".")[0].removesuffix("[]")
    expected = Counter(_key(v) for v in values_at({name: as_data("json", inputs.get(name))}, check.input))
    missing = sorted(set(expected) - set(given), key=str)
    extra = sorted(set(given) - set(expected), key=str)
    if not (missing or extra or repeated):
        return None
    parts = [f"{check.answer} must name each {check.input} exactly once"]
    parts += [f"missing {_listed(missing)}"] if missing else []
    parts += [f"not in {check.input}: {_listed(extra)}"] if extra else []
    parts += [f"named more than once: {_listed(repeated)}"] if repeated else []
    return ", ".join(parts)


def _key(value: Any) -> Any:
    return json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else value


def _listed(values: list[Any]) -> str:
    shown = ", ".join(str(v) for v in values[:SHOWN])
    return shown + (f" and {len(values) - SHOWN} more" if len(values) > SHOWN else "")
