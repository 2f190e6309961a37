"""The DAG of compiled nodes: edges from ref(), cycle reports, run order and fingerprints."""

from __future__ import annotations

import graphlib
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from .compiler import EPHEMERAL_PREFIX, CompiledNode, Compiler, inline_ephemerals
from .errors import GraphError
from .project import Project


@dataclass
class Graph:
    nodes: dict[str, CompiledNode]
    parents: dict[str, set[str]]
    children: dict[str, set[str]] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # a topological order of every node
    fingerprints: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.children = {uid: set() for uid in self.nodes}
        for uid, parents in self.parents.items():
            for parent in parents:
                self.children[parent].add(uid)

    def descendants(self, uid: str) -> set[str]:
        found: set[str] = set()
        stack = [uid]
        while stack:
            for child in self.children[stack.pop()]:
                if child not in found:
                    found.add(child)
                    stack.append(child)
        return found

    def sorted(self, subset: Iterable[str]) -> list[str]:
        wanted = set(subset)
        return [uid for uid in self.order if uid in wanted]


def build_graph(project: Project, compiler: Compiler) -> Graph:
    """Compile every enabled node and connect them; raises on a cycle, with its full path."""
    compiled = {uid: compiler.compile_node(node) for uid, node in project.nodes.items()
                if node.config.get("enabled", True)}
    ephemeral = {c.node.name for c in compiled.values() if c.node.materialized == "ephemeral"}
    compiled = {uid: compiler.resolve_refs(c, ephemeral) for uid, c in compiled.items()}
    by_name = {c.node.name: uid for uid, c in compiled.items() if c.node.resource_type != "test"}
    parents = {uid: {by_name[name] for name in c.refs if name in by_name} for uid, c in compiled.items()}
    graph = Graph(nodes=compiled, parents=parents)
    graph.order = _topological_order(graph)
    _inline_ephemerals(graph)
    graph.fingerprints = _fingerprints(graph, compiler)
    return graph


def _topological_order(graph: Graph) -> list[str]:
    sorter = graphlib.TopologicalSorter({uid: sorted(p) for uid, p in sorted(graph.parents.items())})
    try:
        sorter.prepare()
    except graphlib.CycleError as err:
        cycle = list(err.args[1])
        path = " -> ".join(graph.nodes[uid].node.path for uid in cycle)
        raise GraphError(f"dependency cycle: {path}",
                         hint="a model cannot depend on itself through ref(); break the loop") from None
    order: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        order.extend(ready)
        sorter.done(*ready)
    return order


def _inline_ephemerals(graph: Graph) -> None:
    ephemeral_sql: dict[str, str] = {}
    for uid in graph.order:
        compiled = graph.nodes[uid]
        if EPHEMERAL_PREFIX in compiled.sql:
            compiled = replace(compiled, sql=inline_ephemerals(compiled.sql, ephemeral_sql))
            graph.nodes[uid] = compiled
        if compiled.node.materialized == "ephemeral":
            ephemeral_sql[compiled.node.name] = compiled.sql


def _fingerprints(graph: Graph, compiler: Compiler) -> dict[str, str]:
    """A node's own content hash combined with its parents' fingerprints (SQLMesh-style)."""
    prints: dict[str, str] = {}
    for uid in graph.order:
        digest = hashlib.sha256(own_state_hash(graph.nodes[uid], compiler).encode())
        for parent in sorted(graph.parents[uid]):
            digest.update(prints[parent].encode())
        prints[uid] = digest.hexdigest()[:16]
    return prints


def own_state_hash(compiled: CompiledNode, compiler: Compiler) -> str:
    """What `state:modified` compares: rendered SQL, config, and the macros, prompts and UDFs used."""
    parts = [compiled.checksum, compiled.config_checksum]
    parts += [f"macro:{m}:{compiler.macro_hashes.get(m, '')}" for m in compiled.macros_used]
    functions = compiler.project.function_hashes
    parts += [f"fn:{f}:{functions.get(f, '')}" for f in compiled.functions_used]
    if compiled.node.resource_type == "seed":
        parts.append(compiler.seed_hash(compiled.node))
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def add_test_gates(graph: Graph) -> Graph:
    """For `build`: a model's children wait for its tests, so a failing test skips them."""
    parents = {uid: set(p) for uid, p in graph.parents.items()}
    for uid, compiled in graph.nodes.items():
        node = compiled.node
        if node.resource_type != "test" or not graph.parents[uid]:
            continue
        tested = f"model.{node.generic_test.model}" if node.generic_test else None
        tested = tested if tested in graph.nodes else min(graph.parents[uid])
        downstream = graph.descendants(tested)
        if graph.parents[uid] & downstream:
            continue  # the test reads a model built after the tested one; gating would make a cycle
        for child in graph.children[tested]:
            if graph.nodes[child].node.resource_type != "test":
                parents[child].add(uid)
    gated = Graph(nodes=graph.nodes, parents=parents, fingerprints=graph.fingerprints)
    gated.order = _topological_order(gated)
    return gated
