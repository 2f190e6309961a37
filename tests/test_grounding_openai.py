"""The grounding prompts through a real backend path: the openai SDK against the local OpenAI-compatible server
(answering from the offline backend), selected with vars.grounding.vlm_backend. The records must equal those
of the offline backend: same prompts, structured output, box conventions and conversions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_grounding_support import PIPELINE_TAGS, REPO, failures, grounding_project, records, repo_grounding_vars

from dataproj.vlm.local_server import LocalVLMServer
from dataproj.vlm.serve import offline_server

STEMS = ("scene_040", "scene_004", "scene_047")  # twins; a loose KITTI box; a KITTI box on nothing


@pytest.fixture
def server() -> Iterator[LocalVLMServer]:
    running = offline_server(REPO / "prompts").start()
    try:
        yield running
    finally:
        running.stop()


def test_openai_backend_gives_the_offline_records(tmp_path: Path, server: LocalVLMServer) -> None:
    offline = grounding_project(tmp_path / "offline", stems=STEMS)
    offline.ok("build", "--select", PIPELINE_TAGS)
    backend = (f"backends:\n  local: {{type: openai, base_url: '{server.openai_base_url}', model: gpt-test, "
               "max_workers: 4}\n")
    served = grounding_project(tmp_path / "served", stems=STEMS,
                               grounding={**repo_grounding_vars(), "vlm_backend": "local"}, extra_yml=backend)
    served.ok("build", "--select", PIPELINE_TAGS)
    assert failures(served) == {}
    assert server.request_count == 3 * 2 + 3 * 4  # image_grounding: 2 steps, image_referring_expression: 4
    for pipeline in ("image_grounding", "image_referring_expression"):
        assert records(served, pipeline) == records(offline, pipeline), pipeline
    with served.db() as con:
        backends = con.execute("select distinct backend from dataproj_calls where function like 'grounding%' "
                               "or function like 'refexp%'").fetchall()
    assert backends == [("local",)]
