"""The pipeline is small named steps: no function in stepstone.pipelines over 60 lines, and no step that
names a composition block or the AdapterFusion layer (the layer comes from composition.LAYERS)."""
from __future__ import annotations

import ast
from pathlib import Path

PIPELINES = Path(__file__).resolve().parents[2] / "src" / "stepstone" / "pipelines"


def test_every_function_of_the_pipeline_is_at_most_60_lines():
    long = {}
    for path in sorted(PIPELINES.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                long[f"{path.name}:{node.name}"] = node.end_lineno - node.lineno + 1
    assert long == {}


def test_the_pipeline_names_no_block_and_no_fusion_layer():
    for path in sorted(PIPELINES.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        for name in ("Block.FUSE", "Mode.FUSION", "add_fusion", "save_fusion", "load_fusion", "fusion_name"):
            assert name not in text, f"{path.name} names {name}"
