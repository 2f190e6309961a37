"""The `grounding` vars block of project.yml, validated: which steps run, where the inputs are, what is written.

SQL models read the few settings they need at compile time with the same defaults
(`var('grounding', {}).get(...)`); the Python models validate the whole block, so a misspelt key or an
unknown step stops the run with the key's path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator

from ..config import validate


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("steps", mode="before", check_fields=False)
    @classmethod
    def _steps_as_text(cls, value: Any) -> Any:
        """Steps may be written as numbers (steps: [0, 1]) or strings (steps: ["0", "1"])."""
        return [str(step) for step in value] if isinstance(value, list | tuple) else value


class ImageGroundingSettings(_Settings):
    steps: tuple[Literal["0", "1"], ...] = ("0", "1")  # 0 extracts expressions, 1 grounds them
    force_reprocess: bool = False  # recompute the selected steps' VLM calls (config refresh_cache)
    input_jsonl: str = ""  # "" reads the seed grounding_captions; else a JSONL file (project-relative or absolute)
    image_root: str = "seeds"  # prefix of relative image_path values ("" for none)


class ReferringSettings(_Settings):
    steps: tuple[Literal["0", "1", "2", "3"], ...] = ("0", "1", "2", "3")  # regions, caption, grounding, check
    force_reprocess: bool = False
    output_format: Literal["jsonl", "legacy", "both"] = "jsonl"  # legacy: per-image labels/<stem>.txt.stepN
    image_dir: str = "seeds/scenes"  # images (.jpg, .jpeg, .png), searched recursively
    kitti_label_dir: str = "seeds/grounding/kitti"  # <image stem>.txt KITTI label files
    input_annotations_jsonl: str = ""  # unified annotations to resume from, instead of images + KITTI


class GroundingVars(_Settings):
    image_grounding: ImageGroundingSettings = ImageGroundingSettings()
    image_referring_expression: ReferringSettings = ReferringSettings()
    vlm_backend: str | None = None  # a `backends:` entry for every grounding prompt (None: vlm.backend)


def grounding_vars(value: Any) -> GroundingVars:
    """The validated `vars: grounding:` block (None or {} gives every default)."""
    return validate(GroundingVars, value or {}, path=Path("project.yml"), prefix="vars.grounding")
