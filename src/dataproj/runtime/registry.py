"""Finds the SQL functions of a project: the engine's built-ins and every @udf in udfs/*.py."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from ..errors import ConfigError
from .spec import FunctionSpec, specs_in


def builtin_specs() -> list[FunctionSpec]:
    """The engine's own functions: runtime.builtins and every module of dataproj.vision (metrics, CLIP)."""
    import importlib
    import pkgutil

    from . import builtins

    specs = specs_in(vars(builtins))
    try:
        from .. import vision
    except ImportError:
        return specs
    for module in sorted(pkgutil.iter_modules(vision.__path__), key=lambda m: m.name):
        specs += specs_in(vars(importlib.import_module(f"{vision.__name__}.{module.name}")))
    return specs


def project_specs(udfs_dir: Path, root: Path) -> list[FunctionSpec]:
    """Import each udfs/*.py as its own module and collect its @udf functions."""
    specs: list[FunctionSpec] = []
    for path in sorted(udfs_dir.glob("*.py")) if udfs_dir.is_dir() else []:
        if path.name.startswith("_"):
            continue
        module_name = f"dataproj_project_udfs.{path.stem}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as err:
            raise ConfigError(f"cannot import UDF module: {type(err).__name__}: {err}",
                              path=path.relative_to(root), line=_error_line(err, path)) from None
        specs += specs_in(vars(module))
    return specs


def _error_line(err: BaseException, path: Path) -> int | None:
    if isinstance(err, SyntaxError):
        return err.lineno
    tb = err.__traceback__
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == str(path):
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def all_specs(udfs_dir: Path, root: Path, extra: list[FunctionSpec] | None = None) -> list[FunctionSpec]:
    """Built-ins, project UDFs and generated functions; a name defined twice is an error naming both."""
    seen: dict[str, FunctionSpec] = {}
    for spec in [*builtin_specs(), *project_specs(udfs_dir, root), *(extra or [])]:
        if spec.sql_name in seen:
            first = seen[spec.sql_name]
            raise ConfigError(f"SQL function {spec.name!r} is defined twice: in {_origin(first)} and {_origin(spec)}",
                              hint="rename one of them (SQL function names are case-insensitive)")
        seen[spec.sql_name] = spec
    return list(seen.values())


def _origin(spec: FunctionSpec) -> str:
    code = getattr(spec.func, "__code__", None)
    return f"{code.co_filename}:{code.co_firstlineno}" if code else spec.name
