"""Output models the engine registers by name, for prompt assets that say `output_schema: {model: Name}`."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from ..errors import ConfigError


class PairwiseVerdict(BaseModel):
    """What a pairwise judge prompt answers; `winner` is normalised afterwards (aliases, case)."""

    model_config = ConfigDict(extra="ignore")

    winner: str
    reasoning: str | None = None


class VIEScoreV1(BaseModel):
    """UnicEdit-style VIEScore: one scalar score from 0 to 10."""

    model_config = ConfigDict(extra="ignore")

    score: float = Field(ge=0, le=10)
    reason: str = ""


class VIEScoreV2(BaseModel):
    """EditScore-style VIEScore v2: two integer scores on 0..25, read by the prompt id's family."""

    model_config = ConfigDict(extra="ignore")

    reasoning: str = ""
    score: list[int] = Field(min_length=2, max_length=2)


REGISTERED: dict[str, type[BaseModel]] = {m.__name__: m for m in (PairwiseVerdict, VIEScoreV1, VIEScoreV2)}


def registered_model(name: str, path: Path) -> type[BaseModel]:
    if name not in REGISTERED:
        raise ConfigError(f"output_schema.model {name!r} is not a registered output model", path=path,
                          hint="registered: " + ", ".join(sorted(REGISTERED)) + "; or give an inline json_schema")
    return REGISTERED[name]
