"""Python functions callable from SQL: declared with @udf, run over Arrow batches, cached durably."""

from __future__ import annotations

from .executor import RowFailure
from .ledger import record_usage
from .spec import FunctionSpec, udf
from .types import ImagePath

__all__ = ["FunctionSpec", "ImagePath", "RowFailure", "record_usage", "udf"]
