"""dataproj: a declarative, dbt-style SQL/Arrow data project for image datasets built with VLMs."""

from __future__ import annotations

__version__ = "0.1.0"
