"""Node selection: dbt's --select / --exclude grammar over the project graph.

A value is split on whitespace into a union of expressions; an expression is
a comma-joined intersection of terms; a term is an optional graph operator
around a criterion, e.g. ``2+tag:nightly``, ``path:models/x+``, ``@images``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, Protocol

from dataproj.errors import SelectorError


class SelectableNode(Protocol):
    unique_id: str
    name: str
    resource_type: str
    path: str
    fqn: tuple[str, ...]
    tags: tuple[str, ...]
    config: Mapping[str, Any]


_METHODS = ("name", "fqn", "file", "path", "tag", "resource_type", "state")
_ALLOWED_METHODS = ", ".join((*_METHODS, "config.<key>"))
_RESOURCE_TYPES = ("model", "seed", "test")
_GRAMMAR = '[@][N]+criterion[+[N]], e.g. "+images", "2+tag:nightly", "path:models/x+1", "@images"'

# Groups are None when an operator is absent and "" when it has no depth, so
# "+x" (all ancestors) and "x" (none) stay distinguishable. The criterion may
# not contain "+" or "@", which is what rejects "++x", "x++" and "a+b".
_TERM_RE = re.compile(r"(?P<at>@)?(?:(?P<up>\d*)\+)?(?P<body>[^@+]+?)(?:\+(?P<down>\d*))?")


@dataclass(frozen=True)
class _Term:
    text: str  # as the user wrote it, for error messages
    method: str
    value: str
    at: bool = False
    up: int | None = 0  # parent hops to add: 0 = none, None = all
    down: int | None = 0  # child hops to add: 0 = none, None = all


@dataclass(frozen=True)
class _Graph:
    nodes: Mapping[str, SelectableNode]
    parents: Mapping[str, set[str]]
    children: Mapping[str, set[str]]
    is_modified: Callable[[str], bool] | None


def select_nodes(
    select: Sequence[str] | None,
    exclude: Sequence[str] | None,
    nodes: Mapping[str, SelectableNode],
    parents: Mapping[str, set[str]],
    children: Mapping[str, set[str]],
    is_modified: Callable[[str], bool] | None = None,
) -> set[str]:
    """Return the unique_ids chosen by --select minus --exclude, plus their tests."""
    graph = _Graph(nodes, parents, children, is_modified)
    chosen = _evaluate(select, graph) if _values(select) else set(nodes)
    # Excluded terms drag their tests along too, so `--exclude orders` also
    # drops the tests on orders, as in dbt.
    chosen -= _evaluate(exclude, graph)
    # Graph walks may pass through ids the caller did not hand us (sources...).
    return chosen & nodes.keys()


def describe(select: Sequence[str] | None, exclude: Sequence[str] | None) -> str:
    """One line such as `--select "tag:nope" --exclude "x"` for "nothing matched"."""
    parts = []
    for flag, values in (("--select", select), ("--exclude", exclude)):
        words = [word for value in _values(values) for word in value.split()]
        if words:
            parts.append(f'{flag} "{" ".join(words)}"')
    return " ".join(parts) or "all nodes (no --select or --exclude)"


def _values(values: Sequence[str] | None) -> list[str]:
    # A bare str is a Sequence[str] too; iterating it would select by letters.
    if values is None:
        return []
    return [values] if isinstance(values, str) else list(values)


def _evaluate(values: Sequence[str] | None, graph: _Graph) -> set[str]:
    """Union of every whitespace-separated expression in every value."""
    result: set[str] = set()
    for value in _values(values):
        if not value.strip():
            # Likely an unset shell variable; "everything" would be a bad guess.
            raise SelectorError(f'empty selector "{value}"', hint=f"write {_GRAMMAR}")
        for expression in value.split():
            result |= _evaluate_intersection(expression, graph)
    return result


def _evaluate_intersection(expression: str, graph: _Graph) -> set[str]:
    parts = expression.split(",")
    if not all(parts):
        raise SelectorError(
            f'empty term in "{expression}": intersections are terms joined by single commas',
            hint='e.g. "tag:nightly,path:models/imsearch"',
        )
    terms = [_parse_term(part) for part in parts]  # parse all before any work
    return set.intersection(*(_select_term(term, graph) for term in terms))


def _parse_term(text: str) -> _Term:
    match = _TERM_RE.fullmatch(text)
    has_ops = "+" in text or "@" in text
    # "1+" would otherwise parse as the descendants of a node named "1".
    if match is None or (has_ops and match["body"].isdigit()):
        raise SelectorError(f'malformed selector "{text}": expected {_GRAMMAR}')
    if match["at"] and (match["up"] is not None or match["down"] is not None):
        raise SelectorError(
            f'malformed selector "{text}": "@" cannot be combined with "+"',
            hint='"@x" already includes all descendants of x and their ancestors',
        )
    method, value = _split_method(text, match["body"])
    return _Term(text, method, value, bool(match["at"]), _depth(match["up"]), _depth(match["down"]))


def _depth(raw: str | None) -> int | None:
    if raw is None:
        return 0
    return int(raw) if raw else None


def _split_method(text: str, body: str) -> tuple[str, str]:
    if ":" not in body:
        # Like dbt: bare words are names/fqns unless they look like a file.
        if "/" in body:
            return "path", body
        return ("file" if body.endswith((".sql", ".py")) else "fqn"), body
    method, _, value = body.partition(":")
    known = method in _METHODS or (method.startswith("config.") and method != "config.")
    if not known:
        raise SelectorError(f'unknown selector method "{method}" in "{text}"; allowed: {_ALLOWED_METHODS}')
    if not value:
        raise SelectorError(f'selector "{text}" has no value after "{method}:"')
    if method == "resource_type" and value not in _RESOURCE_TYPES:
        raise SelectorError(f'unknown resource type in "{text}"; allowed: {", ".join(_RESOURCE_TYPES)}')
    if method == "state" and value != "modified":
        raise SelectorError(f'unsupported state selector "{text}"; allowed: state:modified')
    return method, value


def _select_term(term: _Term, graph: _Graph) -> set[str]:
    matches = _matcher(term, graph)
    hits = {uid for uid, node in graph.nodes.items() if matches(node)}
    if term.at:
        # dbt's "@": everything downstream, plus whatever those nodes need to build.
        family = hits | _walk(hits, graph.children, None)
        picked = family | _walk(family, graph.parents, None)
    else:
        picked = hits | _walk(hits, graph.parents, term.up) | _walk(hits, graph.children, term.down)
    # Per term, like dbt, so "orders,resource_type:test" means "the tests of orders".
    return picked | _eager_tests(picked, graph)


def _walk(start: Iterable[str], edges: Mapping[str, set[str]], depth: int | None) -> set[str]:
    """Ids reachable from start in 1..depth hops (None = unlimited), level by level."""
    seen: set[str] = set()
    frontier = set(start)
    hops = 0
    while frontier and (depth is None or hops < depth):
        frontier = {nxt for uid in frontier for nxt in edges.get(uid, ())} - seen
        seen |= frontier
        hops += 1
    return seen


def _matcher(term: _Term, graph: _Graph) -> Callable[[SelectableNode], bool]:
    value = term.value
    if term.method == "name":
        return lambda node: fnmatchcase(node.name, value)
    if term.method == "fqn":
        return lambda node: _fqn_matches(node, value)
    if term.method == "file":
        return lambda node: fnmatchcase(node.path.rsplit("/", 1)[-1], value)
    if term.method == "path":
        pattern = _clean_path(value)
        return lambda node: _path_matches(node.path, pattern)
    if term.method == "tag":
        return lambda node: any(fnmatchcase(tag, value) for tag in node.tags)
    if term.method == "resource_type":
        return lambda node: node.resource_type == value
    if term.method == "state":
        is_modified = graph.is_modified
        if is_modified is None:
            raise SelectorError(
                f'"{term.text}" needs the manifest of a previous run, and there is none',
                hint="run the project once without state:modified, then select again",
            )
        return lambda node: is_modified(node.unique_id)
    key = term.method.removeprefix("config.")
    return lambda node: _config_matches(node.config, key, value)


def _fqn_matches(node: SelectableNode, pattern: str) -> bool:
    # dbt: the node's name, or a dotted prefix of its fqn, each part a glob, so
    # "imsearch" and "imsearch.*" both pick the models under models/imsearch/.
    if fnmatchcase(node.name, pattern):
        return True
    wanted = pattern.split(".")
    prefix = node.fqn[: len(wanted)]
    return len(prefix) == len(wanted) and all(map(fnmatchcase, prefix, wanted))


def _clean_path(pattern: str) -> str:
    pattern = pattern.removeprefix("./")
    return pattern.rstrip("/") or pattern


def _path_matches(path: str, pattern: str) -> bool:
    # A folder selects everything below it, so try each leading run of parts.
    parts = path.split("/")
    return any(fnmatchcase("/".join(parts[:i]), pattern) for i in range(1, len(parts) + 1))


def _config_matches(config: Mapping[str, Any], key: str, expected: str) -> bool:
    value: Any = config
    for part in key.split("."):  # "config.meta.owner:x" reaches into dicts
        if not isinstance(value, Mapping) or part not in value:
            return False
        value = value[part]
    candidates = value if isinstance(value, (list, tuple, set, frozenset)) else [value]
    return any(_config_value_matches(item, expected) for item in candidates)


def _config_value_matches(actual: Any, expected: str) -> bool:
    if isinstance(actual, bool):  # YAML true/True/TRUE all mean the same thing
        return expected.lower() == ("true" if actual else "false")
    return actual is not None and str(actual) == expected


def _eager_tests(picked: set[str], graph: _Graph) -> set[str]:
    """dbt's eager indirect selection: a test rides along if any parent is picked."""
    return {
        uid
        for uid, node in graph.nodes.items()
        if node.resource_type == "test" and not graph.parents.get(uid, set()).isdisjoint(picked)
    }
