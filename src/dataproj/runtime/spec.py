"""The `@udf` decorator: a Python function declared as a SQL function, with its kind, types and cache policy."""

from __future__ import annotations

import collections.abc
import hashlib
import inspect
import json
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from .types import SqlType, sql_type, with_status_fields

Kind = Literal["row", "io", "batch"]
SPEC_ATTRIBUTE = "__dataproj_udf__"


@dataclass(frozen=True)
class Param:
    name: str
    type: SqlType


@dataclass(frozen=True)
class FunctionSpec:
    """Everything the runtime needs to register, call and cache one SQL function."""

    name: str
    func: Callable[..., Any]
    params: tuple[Param, ...]
    result: SqlType
    kind: Kind = "row"
    cached: bool = False
    version: str = "1"
    backend: str | None = None
    config: Mapping[str, Any] = field(default_factory=dict)  # what changes its answer: model, prompt, ...
    batch_size: int | None = None  # batch kind: the most rows per call of `func`
    description: str = ""
    alias: str | None = None  # the public SQL name of a family of variants (e.g. one per VLM backend)
    default_variant: bool = False  # this variant answers to `alias` unless a model picks another
    # cached functions: whether a result is stored (a NULL that only means "model weights not installed" is
    # returned but not kept, so installing them recomputes it); None stores every result
    store_if: Callable[[Any], bool] | None = field(default=None, compare=False)

    @property
    def sql_name(self) -> str:
        return self.name.lower()

    @property
    def hidden_name(self) -> str:
        """The Python function's own SQL name; the public name is a macro that adds the cache key."""
        return f"__dp_{self.sql_name}"

    @property
    def has_image_params(self) -> bool:
        return any(p.type.is_image for p in self.params)

    @cached_property
    def namespace(self) -> str:
        """Cache namespace: function name, version and the config that changes its answer."""
        text = json.dumps({"name": self.sql_name, "version": self.version, "config": self.config},
                          sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def signature(self) -> str:
        """Hash of argument and result types: the cache table changes when they do."""
        text = "|".join([*(f"{p.name}:{p.type.sql}" for p in self.params), self.result.sql])
        return hashlib.sha256(text.encode()).hexdigest()[:8]

    @property
    def ledgered(self) -> bool:
        """Real calls of cached or backend functions are recorded in the call ledger."""
        return self.cached or self.backend is not None


def udf(func: Callable[..., Any] | None = None, *, name: str | None = None, kind: Kind = "row",
        cached: bool = False, version: str = "1", backend: str | None = None,
        config: Mapping[str, Any] | None = None, batch_size: int | None = None,
        store_if: Callable[[Any], bool] | None = None) -> Any:
    """Declare a Python function as a SQL function; the function itself is returned unchanged.

    kind="row" maps it over each Arrow batch; kind="io" runs the rows of a batch concurrently (bounded by the
    backend's max_workers); kind="batch" receives whole columns as lists and returns a list. With cached=True,
    `store_if(result)` (the plain result: a dict for structs) can keep a result out of the cache.
    """

    def declare(target: Callable[..., Any]) -> Callable[..., Any]:
        spec = build_spec(target, name=name, kind=kind, cached=cached, version=version, backend=backend,
                          config=config, batch_size=batch_size, store_if=store_if)
        setattr(target, SPEC_ATTRIBUTE, spec)
        return target

    return declare(func) if func is not None else declare


def build_spec(target: Callable[..., Any], *, name: str | None = None, kind: Kind = "row", cached: bool = False,
               version: str = "1", backend: str | None = None, config: Mapping[str, Any] | None = None,
               batch_size: int | None = None, hints: Mapping[str, Any] | None = None,
               store_if: Callable[[Any], bool] | None = None) -> FunctionSpec:
    """A FunctionSpec from a function's signature and type hints (or explicit `hints`, incl. 'return')."""
    fn_name = name or target.__name__
    resolved = dict(hints) if hints is not None else typing.get_type_hints(target)
    params = []
    for parameter in inspect.signature(target).parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise TypeError(f"udf {fn_name}: *args / **kwargs cannot become SQL arguments")
        if parameter.name not in resolved:
            raise TypeError(f"udf {fn_name}: argument {parameter.name!r} needs a type hint")
        hint = _element(resolved[parameter.name]) if kind == "batch" else resolved[parameter.name]
        params.append(Param(parameter.name, sql_type(hint, where=f"{fn_name}({parameter.name})")))
    if "return" not in resolved:
        raise TypeError(f"udf {fn_name}: needs a return type hint")
    returns = _element(resolved["return"]) if kind == "batch" else resolved["return"]
    result = sql_type(returns, where=f"{fn_name} -> return")
    if result.is_struct:
        result = with_status_fields(result)
    return FunctionSpec(name=fn_name, func=target, params=tuple(params), result=result, kind=kind, cached=cached,
                        version=str(version), backend=backend, config=dict(config or {}), batch_size=batch_size,
                        description=(inspect.getdoc(target) or "").split("\n")[0], store_if=store_if)


def _element(hint: Any) -> Any:
    """Batch functions take and return lists; the SQL type is that of one element."""
    if typing.get_origin(hint) in (list, collections.abc.Sequence) and typing.get_args(hint):
        return typing.get_args(hint)[0]
    raise TypeError(f"batch udf arguments and result must be annotated list[...], got {hint!r}")


def specs_in(namespace: Mapping[str, Any]) -> list[FunctionSpec]:
    """The functions declared with @udf in a module's namespace."""
    return [getattr(value, SPEC_ATTRIBUTE) for value in namespace.values() if hasattr(value, SPEC_ATTRIBUTE)]
