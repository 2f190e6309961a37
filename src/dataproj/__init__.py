"""dataproj: a declarative, dbt-style SQL/Arrow data project for image datasets built with VLMs."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_RUNTIME_NAMES = {"udf", "ImagePath", "RowFailure", "record_usage", "FunctionSpec"}


def __getattr__(name: str) -> Any:
    # `from dataproj import udf` without importing pyarrow and numpy at CLI start-up.
    if name in _RUNTIME_NAMES:
        from . import runtime

        return getattr(runtime, name)
    raise AttributeError(f"module 'dataproj' has no attribute {name!r}")
