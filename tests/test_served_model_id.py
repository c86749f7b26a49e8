"""results.json records the model id an OpenAI-compatible server answered with (issue 15)."""

from __future__ import annotations

import json

from halbench import registry
from halbench.evaluator import evaluate
from halbench.models.openai import OpenAIModel
from tests.test_models_openai import FakeServer


def test_results_json_has_the_served_model_id(tmp_path):
    server = FakeServer()
    try:
        model = OpenAIModel("tiny-served", server.url)
        task = registry.make_task("pope", {})
        evaluate(model, [task], tmp_path / "run", limit=2, progress=False)
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert res["model"]["served_model_id"] == "tiny-served-2024"  # from the completions, not the request
    assert res["model"]["model_id"] == "tiny-served" and res["model"]["fingerprint"]
