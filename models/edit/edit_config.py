"""The selected edit task's pipeline config (project.yml vars.edit.<edit_task>), validated, as one row.

Every other edit model reads its settings from this table, so a misspelt key or a prompt version the engine
does not run stops here with the key, its line in project.yml and what to do. `--vars '{edit_task: <task>}'`
picks the task; `--vars '{edit_metric_weights: random}'` overrides the task's metric_weights (tests only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, model_validator

from dataproj.config import load_project_config, validate
from dataproj.errors import ConfigError
from dataproj.vlm.prompts import PromptStore
from dataproj.yamlio import line_of

config = {"materialized": "table", "tags": ["edit"]}

Metric = Literal["lpips", "emd", "ssim"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PromptRef(_Strict):
    prompt_id: str
    version: str
    function: str | None = None  # the SQL function the asset defines (checked against the asset)


class AreaConfig(_Strict):
    """One area of the reference's train-pairs thresholds config."""

    primary_key: Metric
    primary_direction: Literal[1, -1]  # 1: higher is better (ssim), -1: lower is better (lpips, emd)
    threshold_failure: float = -0.5
    threshold_elite: float = 0.8
    secondary_constraints: dict[Metric, Literal[1, -1]] = Field(default_factory=dict)


class TrainPairsConfig(_Strict):
    areas: dict[Literal["unedit_area"], AreaConfig]
    elite_normal_margin: float = 0.3  # global z-score margin of an Elite_vs_Normal pair
    filt_out_strategy: Literal["three_tiers", "head_tail"] = "three_tiers"
    seed: int = 42  # salts the A/B order of each pair
    max_groups: int = Field(1500, ge=1)  # the reference's prompts_num


class EditTaskConfig(_Strict):
    ground_on: Literal["edited", "source"]  # add tasks ground the new object on the edited image
    metrics: list[Metric] = Field(min_length=1)
    metric_weights: Literal["pretrained", "random"] = "pretrained"
    parser: PromptRef
    grounder: PromptRef
    judges: dict[Literal["pairwise_judge", "viescore"], PromptRef] = Field(min_length=1)
    train_pairs: TrainPairsConfig

    @model_validator(mode="after")
    def _primary_is_computed(self) -> EditTaskConfig:
        area = self.train_pairs.areas["unedit_area"]
        for metric in (area.primary_key, *area.secondary_constraints):
            if metric not in self.metrics:
                raise ValueError(f"train_pairs uses {metric!r}, which `metrics` does not compute")
        return self


# The engine exec()s this file outside any module, so pydantic cannot find the names of the (string)
# annotations by module; hand it this file's namespace.
for _config_model in (PromptRef, AreaConfig, TrainPairsConfig, EditTaskConfig):
    _config_model.model_rebuild(_types_namespace=globals())


def _project_root(start: Path) -> Path:
    for folder in [start, *start.parents]:
        if (folder / "project.yml").is_file():
            return folder
    raise ConfigError("edit_config: no project.yml above the model file", path=start)


def _check_prompts(cfg: EditTaskConfig, root: Path, raw: dict[str, Any], key: str) -> None:
    """Each configured prompt must be the version (and function) the engine binds to its SQL function."""
    store = PromptStore(root / "prompts")
    overrides = raw.get("prompts") or {}
    named = {"parser": cfg.parser, "grounder": cfg.grounder, **{f"judges.{k}": v for k, v in cfg.judges.items()}}
    for where, ref in named.items():
        try:
            asset = store.get(ref.prompt_id, ref.version)
        except ConfigError as err:
            raise ConfigError(f"{key}.{where}: {err.message}", path=root / "project.yml", hint=err.hint) from None
        bound = (overrides.get(ref.prompt_id) or {}).get("version") or store.versions(ref.prompt_id)[-1]
        if bound != ref.version:
            raise ConfigError(f"{key}.{where}.version is {ref.version!r}, but the SQL function runs {bound!r}",
                              path=root / "project.yml",
                              hint=f"pin it in project.yml: prompts: {{{ref.prompt_id}: {{version: {ref.version}}}}}")
        if ref.function is not None and ref.function != asset.function_name:
            raise ConfigError(f"{key}.{where}.function is {ref.function!r}, but {ref.prompt_id} defines "
                              f"{asset.function_name!r}", path=root / "project.yml")


def task_config(task: str, tasks: Any, root: Path) -> EditTaskConfig:
    _, raw = load_project_config(root)
    raw_tasks = (raw.get("vars") or {}).get("edit") or {}
    key = f"vars.edit.{task}"
    if not isinstance(tasks, dict) or task not in tasks:
        known = ", ".join(sorted(tasks)) if isinstance(tasks, dict) else "none"
        raise ConfigError(f"{key}: the edit pipeline has no config for edit_task {task!r}",
                          path=root / "project.yml", line=line_of(raw.get("vars"), "edit"),
                          hint=f"configured tasks: {known}; add a block under vars.edit or pick one with "
                               "--vars '{edit_task: <task>}'")
    cfg = validate(EditTaskConfig, tasks[task], path=root / "project.yml", prefix=key, source=raw_tasks.get(task))
    _check_prompts(cfg, root, raw, key)
    return cfg


def config_row(task: str, cfg: EditTaskConfig, weights: str) -> dict[str, Any]:
    area = cfg.train_pairs.areas["unedit_area"]
    judges = {name: {"prompt_id": ref.prompt_id, "version": ref.version, "function": ref.function}
              for name, ref in cfg.judges.items()}
    return {
        "edit_task": task, "ground_on": cfg.ground_on, "metrics": list(cfg.metrics), "metric_weights": weights,
        "parser_prompt": f"{cfg.parser.prompt_id}/{cfg.parser.version}",
        "grounder_prompt": f"{cfg.grounder.prompt_id}/{cfg.grounder.version}",
        "pairwise_judge_prompt": _prompt_name(judges.get("pairwise_judge")),
        "viescore_prompt": _prompt_name(judges.get("viescore")),
        "primary_key": area.primary_key, "primary_direction": area.primary_direction,
        "threshold_failure": area.threshold_failure, "threshold_elite": area.threshold_elite,
        "lpips_constraint": area.secondary_constraints.get("lpips"),
        "emd_constraint": area.secondary_constraints.get("emd"),
        "ssim_constraint": area.secondary_constraints.get("ssim"),
        "elite_normal_margin": cfg.train_pairs.elite_normal_margin,
        "filt_out_strategy": cfg.train_pairs.filt_out_strategy, "pair_seed": cfg.train_pairs.seed,
        "max_groups": cfg.train_pairs.max_groups,
    }


def _prompt_name(judge: dict[str, Any] | None) -> str | None:
    return f"{judge['prompt_id']}/{judge['version']}" if judge else None


SCHEMA = pa.schema([
    ("edit_task", pa.string()), ("ground_on", pa.string()), ("metrics", pa.list_(pa.string())),
    ("metric_weights", pa.string()), ("parser_prompt", pa.string()), ("grounder_prompt", pa.string()),
    ("pairwise_judge_prompt", pa.string()), ("viescore_prompt", pa.string()), ("primary_key", pa.string()),
    ("primary_direction", pa.int64()), ("threshold_failure", pa.float64()), ("threshold_elite", pa.float64()),
    ("lpips_constraint", pa.int64()), ("emd_constraint", pa.int64()), ("ssim_constraint", pa.int64()),
    ("elite_normal_margin", pa.float64()), ("filt_out_strategy", pa.string()), ("pair_seed", pa.int64()),
    ("max_groups", pa.int64()),
])


def model(ctx: Any) -> pa.Table:
    task = ctx.var("edit_task")
    root = Path(getattr(ctx, "project_dir", None) or _project_root(Path(__file__).resolve().parent))
    cfg = task_config(task, ctx.var("edit"), root)
    weights = ctx.var("edit_metric_weights") or cfg.metric_weights
    if weights not in ("pretrained", "random"):
        raise ConfigError(f"edit_metric_weights must be 'pretrained' or 'random', got {weights!r}",
                          hint="--vars '{edit_metric_weights: random}' (tests only: random weights mean nothing)")
    return pa.Table.from_pylist([config_row(task, cfg, weights)], schema=SCHEMA)
