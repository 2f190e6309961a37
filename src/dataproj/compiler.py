"""Renders models and tests with Jinja (ref, var, env_var, config, this, is_incremental, macros)
and checks the rendered SQL with sqlglot."""

from __future__ import annotations

import ast
import difflib
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import jinja2

from .config import ModelConfig, TestConfig, merge_config, validate
from .errors import CompileError
from .nodes import Node
from .project import Project
from .sqlcheck import check_model_sql

EPHEMERAL_PREFIX = "__dp_cte__"
# ref() renders a token; once every node's own config() is known, the token becomes a relation or a CTE name.
_EXPRESSION = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_FAST_CALL = re.compile(r"(ref|var|env_var|config|is_incremental)\s*\((.*)\)", re.DOTALL)
_REF_TOKEN = re.compile(r"__dp_ref__\[(.+?)\]__")


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """--vars over project vars: nested mappings merge, so `--vars '{edit: {judge: x}}'` keeps edit's other keys."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def relation_name(name: str) -> str:
    """How a model or seed is spelled in compiled SQL."""
    return f'main."{name}"'


@dataclass(frozen=True)
class CompiledNode:
    node: Node
    sql: str  # rendered SQL; for ephemeral parents, placeholders until `inline_ephemerals`
    refs: tuple[str, ...]  # names of the models and seeds it refers to
    macros_used: tuple[str, ...] = ()
    functions_used: tuple[str, ...] = ()
    state_sql: str | None = None  # an incremental model's SQL rendered as a full build: what state compares

    @property
    def unique_id(self) -> str:
        return self.node.unique_id

    @property
    def checksum(self) -> str:
        if self.node.language == "python":
            return _digest(self.node.raw_code)
        return _digest(self.state_sql if self.state_sql is not None else self.sql)

    @property
    def config_checksum(self) -> str:
        return _digest(json.dumps(self.node.config, sort_keys=True, default=str))


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class _RenderState:
    node: Node
    refs: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    macros: set[str] = field(default_factory=set)


class _MacroProxy:
    """Resolves a macro by name at call time, so macros in any file can call each other."""

    def __init__(self, name: str, compiler: Compiler) -> None:
        self.name = name
        self.compiler = compiler

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.compiler.state is not None:
            self.compiler.state.macros.add(self.name)
        return self.compiler.macros[self.name](*args, **kwargs)


class Compiler:
    """Compiles every node of a project; one instance per command."""

    def __init__(self, project: Project, *, cli_vars: dict[str, Any] | None = None,
                 existing_relations: Iterable[str] = (), full_refresh: bool = False,
                 cache_dir: Path | None = None) -> None:
        self.project = project
        self.vars = deep_merge(project.config.vars, cli_vars or {})
        self.existing = set(existing_relations)
        self.full_refresh = full_refresh
        self.names = project.by_name()
        self.state: _RenderState | None = None
        self._as_full_build = False  # is_incremental() is false while this is set
        self.sources: dict[str, str] = {}
        self.env = self._environment(cache_dir)
        self.macros: dict[str, Callable[..., Any]] = {}
        self.macro_hashes: dict[str, str] = {}
        self._load_macros()
        self._function_pattern = _function_regex(project.function_hashes)

    # ---- environment -------------------------------------------------------------------------
    def _environment(self, cache_dir: Path | None) -> jinja2.Environment:
        cache = None
        if cache_dir is not None:
            cache_dir.mkdir(parents=True, exist_ok=True)
            cache = jinja2.FileSystemBytecodeCache(str(cache_dir))
        loader = jinja2.FunctionLoader(lambda name: (self.sources[name], name, lambda: True))
        env = jinja2.Environment(loader=loader, undefined=jinja2.StrictUndefined, bytecode_cache=cache,
                                 autoescape=False, keep_trailing_newline=True, auto_reload=False)
        env.globals.update(ref=self._ref, var=self._var, env_var=self._env_var, config=self._config,
                           is_incremental=self._is_incremental, this=_This(self))
        return env

    def _load_macros(self) -> None:
        for rel, source in self.project.macro_files.items():
            self.sources[rel] = source
            template = self._template(rel, Node(unique_id="macro", name=rel, resource_type="model",
                                                path=rel, fqn=(), config={}))
            for name in dir(template.module):
                value = getattr(template.module, name)
                if isinstance(value, jinja2.runtime.Macro):
                    if name in self.macros:
                        raise CompileError(f"macro {name!r} is defined twice", path=rel,
                                           hint="macro names are global; rename one")
                    self.macros[name] = value
                    self.macro_hashes[name] = _digest(source)
                    self.env.globals[name] = _MacroProxy(name, self)

    def _template(self, name: str, node: Node) -> jinja2.Template:
        try:
            return self.env.get_template(name)
        except jinja2.TemplateSyntaxError as err:
            raise CompileError(f"Jinja syntax error: {err.message}", path=node.path, line=err.lineno) from None

    # ---- context functions -------------------------------------------------------------------
    def _ref(self, name: str, *rest: str) -> str:
        name = rest[0] if rest else name  # ref('package', 'name') form
        target = self.names.get(name)
        if target is None:
            close = difflib.get_close_matches(name, list(self.names), n=1)
            raise CompileError(f"ref({name!r}): no model or seed named {name!r}",
                               hint=f"did you mean {close[0]!r}?" if close else "check the model's file name")
        assert self.state is not None
        self.state.refs.append(name)
        return f"__dp_ref__[{name}]__"

    def _var(self, name: str, default: Any = _RenderState) -> Any:
        if name in self.vars:
            return self.vars[name]
        if default is not _RenderState:
            return default
        raise CompileError(f"var({name!r}) is not set and has no default",
                           hint=f"set `vars: {{{name}: ...}}` in project.yml or pass --vars '{{{name}: ...}}'")

    def _env_var(self, name: str, default: Any = _RenderState) -> Any:
        if name in os.environ:
            return os.environ[name]
        if default is not _RenderState:
            return default
        raise CompileError(f"env_var({name!r}): environment variable is not set and has no default",
                           hint=f"export {name}=... or give a default: env_var('{name}', '...')")

    def _config(self, **kwargs: Any) -> str:
        assert self.state is not None
        self.state.config = merge_config(self.state.config, kwargs)
        return ""

    def _is_incremental(self) -> bool:
        assert self.state is not None
        node = self.state.node
        merged = merge_config(node.config, self.state.config)
        return (merged.get("materialized") == "incremental" and not self.full_refresh
                and node.name in self.existing and not self._as_full_build)

    def seed_hash(self, node: Node) -> str:
        from .seeds import seed_content_hash

        return seed_content_hash(node, self.project.root)

    # ---- compiling ---------------------------------------------------------------------------
    def compile_node(self, node: Node) -> CompiledNode:
        if node.language == "python":
            return CompiledNode(node=node, sql="", refs=node.static_refs)
        if node.resource_type == "seed":
            return CompiledNode(node=node, sql="", refs=())
        if node.generic_test is not None:
            from .datatests import generic_test_sql

            for name in node.static_refs:
                self._check_ref_exists(name, node)
            return CompiledNode(node=node, sql=generic_test_sql(node, relation_name), refs=node.static_refs)
        return self._render(node)

    def _check_ref_exists(self, name: str, node: Node) -> None:
        if name not in self.names:
            close = difflib.get_close_matches(name, list(self.names), n=1)
            raise CompileError(f"test {node.name} refers to {name!r}, which is no model or seed",
                               path=node.generic_test.source_path if node.generic_test else node.path,
                               line=node.generic_test.line if node.generic_test else None,
                               hint=f"did you mean {close[0]!r}?" if close else None)

    def _render(self, node: Node) -> CompiledNode:
        self.sources[node.path] = node.raw_code
        self.state = _RenderState(node=node)
        try:
            sql = self._fast_render(node.raw_code)
            if sql is None:
                sql = self._template(node.path, node).render()
        except CompileError as err:
            raise CompileError(err.message, path=node.path, line=err.line or _template_line(err, node.path),
                               hint=err.hint) from None
        except jinja2.UndefinedError as err:
            raise CompileError(f"undefined Jinja name: {err.message}", path=node.path,
                               line=_template_line(err, node.path),
                               hint="define it with {% set %}, pass it with var(), or add a macro") from None
        except jinja2.TemplateError as err:
            raise CompileError(f"Jinja error: {err}", path=node.path, line=_template_line(err, node.path)) from None
        state, self.state = self.state, None
        config = merge_config(node.config, state.config)
        config_cls = TestConfig if node.resource_type == "test" else ModelConfig
        config = validate(config_cls, config, path=Path(node.path), prefix="config()").model_dump(mode="json")
        functions = tuple(sorted(set(m.lower() for m in self._function_pattern.findall(sql))))
        state_sql = None
        if config.get("materialized") == "incremental" and node.name in self.existing and not self.full_refresh:
            state_sql = self._full_build_sql(node)  # else the first incremental run would look modified
        return CompiledNode(node=replace(node, config=config), sql=sql, refs=tuple(dict.fromkeys(state.refs)),
                            macros_used=tuple(sorted(state.macros)), functions_used=functions, state_sql=state_sql)

    def _full_build_sql(self, node: Node) -> str:
        self._as_full_build, self.state = True, _RenderState(node=node)
        try:
            sql = self._fast_render(node.raw_code)
            return sql if sql is not None else self._template(node.path, node).render()
        finally:
            self._as_full_build, self.state = False, None

    def _fast_render(self, source: str) -> str | None:
        """Render templates whose only Jinja is `{{ f(literal args) }}` for ref / var / env_var / config /
        is_incremental / this, without compiling them: Jinja's compile step dominates parsing large projects.
        Anything else (statements, comments, filters, macros, expressions) returns None: Jinja renders it."""
        if "{%" in source or "{#" in source:
            return None
        pieces: list[str] = []
        position = 0
        for match in _EXPRESSION.finditer(source):
            try:
                value = self._fast_value(match.group(1).strip())
            except CompileError as err:
                err.line = err.line or source.count("\n", 0, match.start()) + 1
                raise
            if value is None:
                return None
            pieces += [source[position:match.start()], value]
            position = match.end()
        pieces.append(source[position:])
        return "".join(pieces)

    def _fast_value(self, expression: str) -> str | None:
        if expression == "this":
            return str(self.env.globals["this"])
        call = _FAST_CALL.fullmatch(expression)
        if call is None:
            return None
        try:
            parsed = ast.parse(f"f({call.group(2)})", mode="eval").body
            args = [ast.literal_eval(a) for a in parsed.args]  # type: ignore[attr-defined]
            kwargs = {k.arg: ast.literal_eval(k.value) for k in parsed.keywords}  # type: ignore[attr-defined]
        except (SyntaxError, ValueError):
            return None
        if any(k is None for k in kwargs):
            return None
        function = {"ref": self._ref, "var": self._var, "env_var": self._env_var, "config": self._config,
                    "is_incremental": self._is_incremental}[call.group(1)]
        return str(function(*args, **kwargs))

    def resolve_refs(self, compiled: CompiledNode, ephemeral: set[str]) -> CompiledNode:
        """Turn ref tokens into relations (or CTE names for ephemeral models), then check the SQL."""
        if not compiled.sql or compiled.node.generic_test is not None:
            return compiled
        sql = _REF_TOKEN.sub(lambda m: EPHEMERAL_PREFIX + m.group(1) if m.group(1) in ephemeral
                             else relation_name(m.group(1)), compiled.sql)
        check_model_sql(compiled.node, sql, set(self.names))
        return replace(compiled, sql=sql)


class _This:
    """`{{ this }}`: the relation the current node builds."""

    def __init__(self, compiler: Compiler) -> None:
        self.compiler = compiler

    def __str__(self) -> str:
        state = self.compiler.state
        return relation_name(state.node.name) if state else ""

    @property
    def name(self) -> str:
        state = self.compiler.state
        return state.node.name if state else ""


def _template_line(err: BaseException, filename: str) -> int | None:
    """The template line of the innermost traceback frame that belongs to `filename`."""
    line = getattr(err, "lineno", None)
    tb = err.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _function_regex(functions: dict[str, str]) -> re.Pattern[str]:
    if not functions:
        return re.compile(r"(?!x)x")
    names = "|".join(re.escape(n) for n in sorted(functions, key=len, reverse=True))
    return re.compile(rf"\b({names})\s*\(", re.IGNORECASE)


_LEADING_WITH = re.compile(r"^(\s*(?:--[^\n]*\n\s*|/\*.*?\*/\s*)*)with(\s+recursive)?\s", re.IGNORECASE | re.DOTALL)


def inline_ephemerals(sql: str, ephemeral_sql: dict[str, str]) -> str:
    """Prepend a CTE for every ephemeral model the SQL refers to (their SQL already inlined)."""
    used = [name for name in ephemeral_sql if EPHEMERAL_PREFIX + name in sql]
    if not used:
        return sql
    ctes = ",\n".join(f"{EPHEMERAL_PREFIX}{name} AS (\n{ephemeral_sql[name]}\n)" for name in used)
    match = _LEADING_WITH.match(sql)
    if match:
        return f"{sql[:match.end()]}{ctes},\n{sql[match.end():]}"
    return f"WITH {ctes}\n{sql}"
