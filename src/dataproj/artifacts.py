"""warehouse/target: manifest.json, run_results.json and compiled SQL; warehouse/state: what is built."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import __version__
from .compiler import Compiler
from .graph import Graph, own_state_hash
from .runner import NodeResult

SUCCESS = {"success", "pass", "warn"}


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")
    os.replace(partial, path)


def _metadata(command: str) -> dict[str, Any]:
    return {"dataproj_version": __version__, "generated_at": datetime.now(UTC).isoformat(), "command": command}


def compiled_path(target_dir: Path, node_path: str) -> Path:
    return target_dir / "compiled" / node_path


def write_compiled(graph: Graph, target_dir: Path) -> None:
    for compiled in graph.nodes.values():
        if compiled.sql:
            path = compiled_path(target_dir, compiled.node.path if compiled.node.generic_test is None
                                 else f"tests/{compiled.node.name}.sql")
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists() or path.read_text(encoding="utf-8") != compiled.sql:
                path.write_text(compiled.sql, encoding="utf-8")


def manifest(graph: Graph, compiler: Compiler, target_dir: Path, command: str) -> dict[str, Any]:
    nodes = {}
    for uid in graph.order:
        compiled = graph.nodes[uid]
        node = compiled.node
        nodes[uid] = {
            "name": node.name, "resource_type": node.resource_type, "path": node.path, "fqn": list(node.fqn),
            "language": node.language, "config": node.config, "tags": list(node.tags),
            "description": node.description, "columns": node.columns,
            "depends_on": sorted(graph.parents[uid]), "macros_used": list(compiled.macros_used),
            "functions_used": list(compiled.functions_used), "checksum": compiled.checksum,
            "state_hash": own_state_hash(compiled, compiler), "fingerprint": graph.fingerprints[uid],
            "compiled_path": (compiled_path(target_dir, node.path).relative_to(compiler.project.root).as_posix()
                              if compiled.sql and node.generic_test is None else None),
        }
    edges = {uid: sorted(graph.children[uid]) for uid in graph.order}
    return {"metadata": _metadata(command), "nodes": nodes, "child_map": edges,
            "parent_map": {uid: sorted(graph.parents[uid]) for uid in graph.order}}


def write_manifest(data: dict[str, Any], target_dir: Path) -> None:
    _write_json(target_dir / "manifest.json", data)


def write_run_results(results: list[NodeResult], elapsed: float, target_dir: Path, command: str,
                      args: dict[str, Any]) -> None:
    _write_json(target_dir / "run_results.json", {
        "metadata": _metadata(command), "elapsed_time": round(elapsed, 3), "args": args,
        "results": [asdict(r) for r in results]})


def load_state(state_dir: Path) -> dict[str, Any] | None:
    path = state_dir / "manifest.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def update_state(state_dir: Path, current: dict[str, Any], results: list[NodeResult]) -> None:
    """Record what is now built: nodes that succeeded take their new entry, the rest keep the old one,
    so a node that failed or was not selected stays `state:modified` until it is built."""
    previous = load_state(state_dir) or {"nodes": {}}
    nodes = dict(previous["nodes"])
    for result in results:
        if result.status in SUCCESS and result.unique_id in current["nodes"]:
            nodes[result.unique_id] = current["nodes"][result.unique_id]
    nodes = {uid: entry for uid, entry in nodes.items() if uid in current["nodes"]}
    _write_json(state_dir / "manifest.json", {"metadata": current["metadata"], "nodes": nodes})


def modified_checker(state: dict[str, Any] | None, current: dict[str, Any]):  # noqa: ANN201
    """is_modified(uid) for the selector, or None when there is no previous state."""
    if state is None:
        return None
    before = state["nodes"]

    def is_modified(uid: str) -> bool:
        old = before.get(uid)
        return old is None or old.get("state_hash") != current["nodes"].get(uid, {}).get("state_hash")

    return is_modified
