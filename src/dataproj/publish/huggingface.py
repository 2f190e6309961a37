"""The benchmark as a Hugging Face dataset: built from qrels_with_score, saved with a dataset card, and pushed.

Rows are the judged qrels (a query whose judgments failed is left out and counted) in query order, the seed
first, as the reference publishes them; `image` holds the image file's bytes with the datasets Image feature,
so the saved dataset and the pushed Parquet shards are self-contained. The push is one commit made with
huggingface_hub: data/train-*.parquet, README.md (the card), summary/ and annotations.jsonl.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataprojError

# Columns that describe the pipeline's own bookkeeping rather than the benchmark.
INTERNAL_COLUMNS = ("judge_status", "judge_error", "judge_raw_response", "similarity_error")
SHARD_BYTES = 500 * 1024 * 1024


@dataclass(frozen=True)
class HubSettings:
    name: str
    description: str
    similarity_column: str
    repo_id: str | None = None
    private: bool = False

    @classmethod
    def from_vars(cls, imsearch: dict[str, Any]) -> HubSettings:
        hf = imsearch.get("hf") or {}
        return cls(name=hf.get("name") or "Image-search benchmark", description=hf.get("description") or "",
                   similarity_column=(imsearch.get("similarity") or {}).get("column", "similarity_score"),
                   repo_id=hf.get("repo_id") or None, private=bool(hf.get("private", False)))


@dataclass(frozen=True)
class BenchmarkRows:
    rows: list[dict[str, Any]]
    failed_rows: int  # qrels rows of queries whose judgments failed
    missing_images: int  # rows whose image file is gone


def benchmark_rows(con: Any, root: Path) -> BenchmarkRows:
    """The judged qrels with scores (or without, when no scores were computed), seed first in every query."""
    tables = {r[0] for r in con.execute("select table_name from information_schema.tables "
                                        "where table_schema = 'main'").fetchall()}
    source = "qrels_with_score" if "qrels_with_score" in tables else "qrels"
    if source not in tables:
        raise DataprojError("the benchmark is not built: no qrels table in the warehouse",
                            hint="dataproj build --select +qrels_with_score")
    cursor = con.execute(f"select q.*, f.path as __path from {source} as q "
                         f"join image_files as f using (image_id) order by q.query_id, q.candidate_rank")
    names = [d[0] for d in cursor.description]
    rows, failed, missing = [], 0, 0
    for values in cursor.fetchall():
        row = dict(zip(names, values, strict=True))
        if row.get("judge_status", "ok") != "ok" or row.get("relevance_label") is None:
            failed += 1
            continue
        path = root / row.pop("__path")
        if not path.is_file():
            missing += 1
            continue
        rows.append({k: v for k, v in row.items() if k not in INTERNAL_COLUMNS}
                    | {"image": {"bytes": path.read_bytes(), "path": path.name}})
    return BenchmarkRows(rows, failed, missing)


def build_dataset(rows: list[dict[str, Any]]) -> Any:
    from datasets import Dataset, Image

    if not rows:
        raise DataprojError("no judged qrels to publish", hint="check qrels.judge_status and judge_error")
    return Dataset.from_list(rows).cast_column("image", Image())


def dataset_card(dataset: Any, settings: HubSettings, built: BenchmarkRows, quality: list[dict[str, Any]],
                 scorers: list[str]) -> str:
    """README.md: YAML front matter for the Hub, then counts, fields, licenses and how the set was built."""
    rows = built.rows
    queries = sorted({r["query_id"] for r in rows})
    images = {r["image_id"]: r.get("license") or "UNKNOWN" for r in rows}
    licenses = Counter(images.values())
    relevant = sum(r["relevance_label"] == 1 for r in rows)
    size = "n<1K" if len(rows) < 1000 else "1K<n<10K" if len(rows) < 10_000 else "10K<n<100K"
    license_tag = _license_tag(licenses)
    lines = ["---", f"pretty_name: {json.dumps(settings.name)}", f"license: {license_tag}",
             "task_categories:", "- text-to-image", "- image-classification", "tags:", "- image-retrieval",
             "- benchmark", "- dataproj", "size_categories:", f"- {size}", "configs:", "- config_name: default",
             "  data_files:", "  - split: train", "    path: data/train-*", "---", "",
             f"# {settings.name}", "", settings.description, "",
             "Each row pairs a text query with a candidate image and a binary relevance label. For every "
             "`query_id` the first row is the query's seed image (the ground-truth match the query was written "
             "from); the following rows are the candidates.", "",
             "## Counts", "", "| | |", "|---|---|",
             f"| queries | {len(queries)} |", f"| rows (query, image pairs) | {len(rows)} |",
             f"| distinct images | {len(images)} |", f"| relevant pairs | {relevant} ({_pct(relevant, len(rows))}) |",
             f"| rows left out (failed judgments) | {built.failed_rows} |",
             f"| rows left out (missing image files) | {built.missing_images} |", "",
             "## Fields", "", "| field | type |", "|---|---|"]
    lines += [f"| `{name}` | {_feature_type(feature)} |" for name, feature in dataset.features.items()]
    lines += ["", "## Licenses", "", "| license | images |", "|---|---|"]
    lines += [f"| {name} | {count} |" for name, count in sorted(licenses.items(), key=lambda x: (-x[1], x[0]))]
    lines += ["", "## How it was built", "",
              "Built with dataproj's `imsearch` pipeline, a SQL re-implementation of "
              "imsearch_benchmaker: images and their rights map → vision annotation (summary, facets, tags, "
              "confidence) → query plan (seeds, positives, neutrals, hard / near-miss / easy negatives by facets "
              "and tag Jaccard) → one judge call per query (query text and a label per candidate) → similarity "
              "score per pair → this dataset.", "",
              f"- `{settings.similarity_column}` was produced by: {', '.join(scorers) or 'n/a'}"]
    if quality:
        overall = next((q for q in quality if q.get("scope") == "all"), quality[0])
        lines += [f"- Agreement of the relevance labels with the sample's ground truth: {overall.get('agreement')} "
                  f"over {overall.get('pairs')} pairs (Cohen's kappa {overall.get('kappa')})."]
    lines += ["- Summary tables and plots: [summary/](summary/); the annotations: `annotations.jsonl`.", ""]
    return "\n".join(lines)


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "n/a"


def _license_tag(licenses: Counter[str]) -> str:
    known = {"CC BY 4.0": "cc-by-4.0", "CC BY-SA 4.0": "cc-by-sa-4.0", "CC0 1.0": "cc0-1.0",
             "CC BY-NC 4.0": "cc-by-nc-4.0", "MIT": "mit", "Apache 2.0": "apache-2.0"}
    tags = {known.get(name, "other") for name in licenses}
    return tags.pop() if len(tags) == 1 else "other"


def _feature_type(feature: Any) -> str:
    kind = type(feature).__name__
    dtype = getattr(feature, "dtype", None)
    return f"{kind} ({dtype})" if dtype and kind == "Value" else kind


def save(dataset: Any, card: str, built: BenchmarkRows, out_dir: Path) -> dict[str, Any]:
    """out_dir/dataset (save_to_disk), out_dir/README.md, out_dir/dataset_metadata.json and Parquet shards."""
    out_dir.mkdir(parents=True, exist_ok=True)
    dataset.save_to_disk(str(out_dir / "dataset"))
    (out_dir / "README.md").write_text(card, encoding="utf-8")
    shards = parquet_shards(dataset, out_dir / "data")
    metadata = {"total_rows": len(built.rows), "failed_rows": built.failed_rows,
                "missing_images": built.missing_images, "columns": list(dataset.column_names),
                "shards": [p.name for p in shards]}
    (out_dir / "dataset_metadata.json").write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    return metadata


def parquet_shards(dataset: Any, folder: Path) -> list[Path]:
    """data/train-0000i-of-0000n.parquet, each at most ~500 MB, as push_to_hub names them."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("train-*.parquet"):
        stale.unlink()
    count = max(1, math.ceil(dataset.data.nbytes / SHARD_BYTES))
    paths = []
    for index in range(count):
        path = folder / f"train-{index:05d}-of-{count:05d}.parquet"
        dataset.shard(num_shards=count, index=index, contiguous=True).to_parquet(str(path))
        paths.append(path)
    return paths


def push(out_dir: Path, repo_id: str, *, token: str, private: bool, extra_files: dict[str, Path]) -> Any:
    """One commit to the dataset repo (created if needed): the shards, the card and the extra files."""
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    files = {f"data/{p.name}": p for p in sorted((out_dir / "data").glob("train-*.parquet"))}
    files["README.md"] = out_dir / "README.md"
    files |= extra_files
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(path)) for name, path in files.items()]
    return api.create_commit(repo_id, operations, repo_type="dataset",
                             commit_message=f"dataproj publish hf: {len(files)} files")


def quiet_progress_bars() -> None:
    """The CLI prints one line per step; the libraries' progress bars would bury it."""
    import datasets
    from huggingface_hub.utils import disable_progress_bars

    datasets.disable_progress_bars()
    disable_progress_bars()


def hf_token() -> str:
    token = os.environ.get("HF_TOKEN")
    if not token:
        raise DataprojError("pushing to the Hugging Face Hub needs a token: set HF_TOKEN",
                            hint="or leave out --repo-id to only build and save the dataset")
    return token
