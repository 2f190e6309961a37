"""The image-search benchmark's summary: the reference's CSV tables and PNG plots, from the warehouse."""

from __future__ import annotations

from .summary import SummarySettings, write_summary

__all__ = ["SummarySettings", "write_summary"]
