"""Finds a project's models, seeds, property files, tests, macros, UDF modules and prompts."""

from __future__ import annotations

import ast
import hashlib
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from .config import (
    ModelConfig,
    ProjectConfig,
    SeedConfig,
    TestConfig,
    load_project_config,
    merge_config,
    split_config_tree,
    validate,
)
from .errors import ConfigError, GraphError
from .nodes import Node
from .properties import generic_tests, load_properties
from .yamlio import line_of

TABULAR_SEEDS = {".csv": "csv", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}


@dataclass
class Project:
    root: Path
    config: ProjectConfig
    raw_config: dict[str, Any] = field(default_factory=dict)  # project.yml as loaded, with key lines
    nodes: dict[str, Node] = field(default_factory=dict)
    macro_files: dict[str, str] = field(default_factory=dict)  # relative path -> source
    function_hashes: dict[str, str] = field(default_factory=dict)  # SQL function name -> source hash
    config_memo: dict[tuple[Any, ...], dict[str, Any]] = field(default_factory=dict, repr=False)

    def dir(self, key: str) -> Path:
        return self.root / getattr(self.config.paths, key)

    @property
    def warehouse_path(self) -> Path:
        return self.root / self.config.warehouse

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def by_name(self) -> dict[str, Node]:
        """Models and seeds by name (names are unique across both)."""
        return {n.name: n for n in self.nodes.values() if n.resource_type in ("model", "seed")}


def load_project(root: Path) -> Project:
    root = root.resolve()
    config, raw = load_project_config(root)
    project = Project(root=root, config=config, raw_config=raw)
    _add(project, _discover_models(project))
    _add(project, _discover_seeds(project))
    _apply_properties(project)
    _add(project, _discover_singular_tests(project))
    project.macro_files = {project.rel(p): p.read_text(encoding="utf-8")
                           for p in sorted(project.dir("macros").rglob("*.sql"))}
    project.function_hashes = _function_hashes(project)
    return project


def _add(project: Project, nodes: list[Node]) -> None:
    names = {n.name: n for n in project.nodes.values() if n.resource_type != "test"}
    for node in nodes:
        clash = names.get(node.name) if node.resource_type != "test" else None
        if clash is not None or node.unique_id in project.nodes:
            other = clash or project.nodes[node.unique_id]
            raise GraphError(f"duplicate name {node.name!r}: {other.path} and {node.path}",
                             hint="model and seed names must be unique across the project; rename one file")
        names[node.name] = node
        project.nodes[node.unique_id] = node


def resolved(config_cls: type[BaseModel], config: dict[str, Any], path: str | Path, prefix: str = "",
             source: Any = None) -> dict[str, Any]:
    """Validate a merged config and return it with every default filled in (JSON-ready)."""
    return validate(config_cls, config, path=Path(path), prefix=prefix, source=source).model_dump(mode="json")


def _folder_config(project: Project, section: str, fqn: tuple[str, ...],
                   config_cls: type[BaseModel]) -> dict[str, Any]:
    """Merge the project.yml tree's configs along a node's folders (and its own name)."""
    tree: Any = project.raw_config.get(section) or {}
    path = project.root / "project.yml"
    key_path = section
    merged, children = split_config_tree(tree, config_cls, path=path, key_path=key_path)
    applied: list[str] = []
    for part in fqn:
        if part not in children:
            break
        key_path += "." + part
        applied.append(part)
        configs, children = split_config_tree(children[part], config_cls, path=path, key_path=key_path)
        merged = merge_config(merged, configs)
    # Models in one folder share their config: validate it once per distinct path in the tree.
    key = (section, tuple(applied))
    if key not in project.config_memo:
        project.config_memo[key] = resolved(config_cls, merged, project.root / "project.yml", prefix=section)
    return dict(project.config_memo[key])


def _check_config_tree(project: Project, section: str, known: set[tuple[str, ...]],
                       config_cls: type[BaseModel]) -> None:
    """Every sub-key of the models:/seeds: tree must name a folder or node that exists."""
    path = project.root / "project.yml"

    def walk(tree: dict[str, Any], prefix: tuple[str, ...]) -> None:
        _, children = split_config_tree(tree, config_cls, path=path, key_path=".".join((section, *prefix)))
        for name, sub in children.items():
            if prefix + (name,) not in known:
                raise ConfigError(f"{'.'.join((section, *prefix, name))}: no folder or {section[:-1]} named "
                                  f"{name!r} under {getattr(project.config.paths, section)}/{'/'.join(prefix)}",
                                  path=path, line=line_of(tree, name),
                                  hint="fix the folder name, or start config keys with '+'")
            walk(sub, prefix + (name,))

    walk(project.raw_config.get(section) or {}, ())


def _prefixes(fqns: list[tuple[str, ...]]) -> set[tuple[str, ...]]:
    return {fqn[:i] for fqn in fqns for i in range(1, len(fqn) + 1)}


def _discover_models(project: Project) -> list[Node]:
    models_dir = project.dir("models")
    nodes: list[Node] = []
    for folder_parts, path in _model_files(models_dir):
        rel = project.rel(path)
        fqn = (*folder_parts, path.stem)
        code = path.read_text(encoding="utf-8")
        config = _folder_config(project, "models", fqn, ModelConfig)
        static_refs: tuple[str, ...] = ()
        language = "sql"
        if path.suffix == ".py":
            language = "python"
            static_refs, py_config = _python_model_info(code, rel)
            config = resolved(ModelConfig, merge_config(merge_config(config, {"materialized": "table"}), py_config),
                              rel, prefix="config")
        nodes.append(Node(unique_id=f"model.{path.stem}", name=path.stem, resource_type="model", path=rel,
                          fqn=fqn, config=config, language=language, raw_code=code, static_refs=static_refs))
    _check_config_tree(project, "models", _prefixes([n.fqn for n in nodes]), ModelConfig)
    return nodes


def _model_files(models_dir: Path) -> list[tuple[tuple[str, ...], Path]]:
    """(folder parts below models/, path) of every *.sql and *.py model, sorted; os.walk is much cheaper than
    pathlib's rglob on projects with thousands of models."""
    found = []
    for folder, dirs, files in os.walk(models_dir):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        parts = tuple(Path(folder).relative_to(models_dir).parts)
        for name in files:
            if name.endswith((".sql", ".py")) and not name.startswith("_"):
                found.append((parts, Path(folder) / name))
    return sorted(found, key=lambda item: item[1])


def _python_model_info(code: str, rel: str) -> tuple[tuple[str, ...], dict[str, Any]]:
    """Refs (`ctx.ref('x')` with a literal name) and a module-level `config = {...}` of a Python model."""
    try:
        tree = ast.parse(code, filename=rel)
    except SyntaxError as err:
        raise ConfigError(f"Python syntax error: {err.msg}", path=rel, line=err.lineno) from None
    refs: list[str] = []
    config: dict[str, Any] = {}
    has_model = False
    for item in ast.walk(tree):
        if isinstance(item, ast.Call) and isinstance(item.func, ast.Attribute) and item.func.attr == "ref":
            if not (item.args and isinstance(item.args[0], ast.Constant) and isinstance(item.args[0].value, str)):
                raise ConfigError("ctx.ref() needs a literal model name", path=rel, line=item.lineno)
            refs.append(item.args[0].value)
        if isinstance(item, ast.FunctionDef) and item.name == "model":
            has_model = True
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "config" for t in stmt.targets):
            try:
                config = ast.literal_eval(stmt.value)
            except ValueError:
                raise ConfigError("`config` must be a literal dict", path=rel, line=stmt.lineno) from None
    if not has_model:
        raise ConfigError("a Python model must define `def model(ctx):` returning a table", path=rel)
    return tuple(dict.fromkeys(refs)), config


def _discover_seeds(project: Project) -> list[Node]:
    seeds_dir = project.dir("seeds")
    nodes: list[Node] = []
    known: list[tuple[str, ...]] = []

    def walk(folder: Path, prefix: tuple[str, ...]) -> None:
        for path in sorted(folder.iterdir()):
            fqn = (*prefix, path.stem if path.is_file() else path.name)
            if path.is_dir():
                known.append(fqn)
                config = _folder_config(project, "seeds", fqn, SeedConfig)
                if config.get("format") == "images":
                    nodes.append(_seed_node(project, path, fqn, config, "images"))
                else:
                    walk(path, fqn)
            elif path.suffix.lower() in TABULAR_SEEDS:
                config = _folder_config(project, "seeds", fqn, SeedConfig)
                known.append(fqn)
                nodes.append(_seed_node(project, path, fqn, config, TABULAR_SEEDS[path.suffix.lower()]))

    if seeds_dir.is_dir():
        walk(seeds_dir, ())
    _check_config_tree(project, "seeds", _prefixes(known), SeedConfig)
    return nodes


def _seed_node(project: Project, path: Path, fqn: tuple[str, ...], config: dict[str, Any], kind: str) -> Node:
    return Node(unique_id=f"seed.{fqn[-1]}", name=fqn[-1], resource_type="seed", path=project.rel(path),
                fqn=fqn, config=config, language=kind)  # type: ignore[arg-type]


def _property_files(project: Project) -> list[Path]:
    files: list[Path] = []
    for key in ("models", "seeds"):
        folder = project.dir(key)
        files += sorted([*folder.rglob("*.yml"), *folder.rglob("*.yaml")]) if folder.is_dir() else []
    return files


def _apply_properties(project: Project) -> None:
    """Descriptions, columns and config from YAML onto nodes; generic tests become test nodes."""
    tests: list[Node] = []
    for path in _property_files(project):
        rel = project.rel(path)
        props, raw = load_properties(path, rel)
        for section, cls in (("models", ModelConfig), ("seeds", SeedConfig)):
            raw_entries = raw.get(section, []) if isinstance(raw, dict) else []
            for entry, raw_entry in zip(getattr(props, section), raw_entries, strict=False):
                node = project.nodes.get(f"{section[:-1]}.{entry.name}")
                if node is None:
                    raise ConfigError(f"{section}: no {section[:-1]} named {entry.name!r}", path=rel,
                                      line=line_of(raw_entry, "name"), hint=_closest(entry.name, project))
                config = resolved(cls, merge_config(node.config, entry.config), rel, prefix=f"{entry.name}.config",
                                  source=raw_entry.get("config", {}))
                columns = {c.name: c.description for c in entry.columns}
                project.nodes[node.unique_id] = replace(node, config=config, description=entry.description,
                                                        columns=columns)
                tests += [_generic_test_node(project, t) for t in generic_tests(entry, raw_entry, rel)]
    _add(project, _unique_test_names(tests))


def _closest(name: str, project: Project) -> str | None:
    import difflib

    close = difflib.get_close_matches(name, list(project.by_name()), n=1)
    return f"did you mean {close[0]!r}?" if close else None


def _generic_test_node(project: Project, test: Any) -> Node:
    name = "_".join(p for p in (test.kind, test.model, test.column) if p)
    config = resolved(TestConfig, merge_config(dict(project.config.tests), test.config), test.source_path,
                      prefix=f"{name}.config")
    refs = (test.model, test.args["to"]) if test.kind == "relationships" else (test.model,)
    return Node(unique_id=f"test.{name}", name=name, resource_type="test", path=test.source_path,
                fqn=("tests", name), config=config, language="generic", generic_test=test, static_refs=refs)


def _unique_test_names(tests: list[Node]) -> list[Node]:
    seen: dict[str, int] = {}
    unique: list[Node] = []
    for node in tests:
        count = seen[node.name] = seen.get(node.name, 0) + 1
        if count > 1:
            name = f"{node.name}_{count}"
            node = replace(node, name=name, unique_id=f"test.{name}", fqn=("tests", name))
        unique.append(node)
    return unique


def _discover_singular_tests(project: Project) -> list[Node]:
    tests_dir = project.dir("tests")
    nodes = []
    for path in sorted(tests_dir.rglob("*.sql")) if tests_dir.is_dir() else []:
        config = resolved(TestConfig, dict(project.config.tests), project.root / "project.yml", prefix="tests")
        nodes.append(Node(unique_id=f"test.{path.stem}", name=path.stem, resource_type="test",
                          path=project.rel(path), fqn=("tests", path.stem), config=config,
                          raw_code=path.read_text(encoding="utf-8")))
    return nodes


def _function_hashes(project: Project) -> dict[str, str]:
    """SQL function name -> hash of the file that defines it (UDF modules and prompt assets).

    Used by state:modified: a model that calls a function changes when that function's source does.
    """
    hashes: dict[str, str] = {}
    udfs = project.dir("udfs")
    for path in sorted(udfs.rglob("*.py")) if udfs.is_dir() else []:
        source = path.read_bytes()
        digest = hashlib.sha256(source).hexdigest()[:16]
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for item in tree.body:
            if isinstance(item, ast.FunctionDef) and item.decorator_list:
                hashes[item.name.lower()] = digest
    prompts = project.dir("prompts")
    by_function: dict[str, list[bytes]] = {}
    for path in sorted(prompts.rglob("*.yaml")) if prompts.is_dir() else []:
        source = path.read_bytes()
        match = re.search(rb"^function:\s*['\"]?([A-Za-z_][A-Za-z0-9_]*)", source, re.MULTILINE)
        name = match.group(1).decode() if match else re.sub(r"\W", "_", path.parent.name)
        by_function.setdefault(name.lower(), []).append(source)
    for name, sources in by_function.items():  # every version of an asset: a new version is a change too
        hashes[name] = hashlib.sha256(b"".join(sources)).hexdigest()[:16]
    return hashes
