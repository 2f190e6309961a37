"""Helpers of the 2D grounding pipelines (models/grounding/): the referring-expression grammar of the sample
scenes, input records, legacy label files and the quality query."""
