"""The SQL functions of a project, ready to register on warehouse cursors."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .project import Project


def make_runtime(project: Project, *, refresh: bool | Iterable[str] = False, retry_failed: bool = False,  # noqa: ANN201
                 variables: dict[str, Any] | None = None):
    """A Runtime with the engine's built-ins, the project's udfs/*.py functions and its prompt assets' functions
    (whose output schemas may be rendered from `variables`, the project's vars with --vars over them)."""
    from .runtime.registry import all_specs
    from .runtime.runtime import Runtime
    from .vlm.functions import backend_limits, vlm_specs

    specs = all_specs(project.dir("udfs"), project.root, extra=vlm_specs(project, variables))
    return Runtime(project.root, specs, project.dir("cache") / "calls.duckdb",
                   backends=backend_limits(project), prices=project.config.prices, refresh=refresh,
                   retry_failed=retry_failed)
