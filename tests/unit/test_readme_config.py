"""README's configuration table lists every key a run config accepts, so it cannot fall behind the specs."""
from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path

from stepstone.specs import RunSpec

README = Path(__file__).resolve().parents[2] / "README.md"


def config_keys(cls: type, prefix: str = "") -> list[str]:
    """Every dotted key of a spec: nested specs that are always there (backbone, method.lora, train) are
    walked into; an optional one (compose) is one key, set as a whole."""
    keys = []
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        tp = hints[field.name]
        if dataclasses.is_dataclass(tp):
            keys += config_keys(tp, f"{prefix}{field.name}.")
        else:
            keys.append(prefix + field.name)
    return keys


def table_keys(text: str) -> list[str]:
    """The keys in README's "### Configuration" table. A cell may name several: `train.epochs` /
    `batch_size` (siblings of the first key) or `method.lora.r` / `.alpha` (the same)."""
    section = text.split("### Configuration", 1)[1].split("\n### ", 1)[0]
    keys = []
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        first, *more = re.findall(r"`([^`]+)`", line.split(" | ")[0])
        keys.append(first)
        parent = first.rsplit(".", 1)[0] + "." if "." in first else ""
        keys += [parent + name.lstrip(".") for name in more]
    return keys


def test_config_keys_walk_the_specs():
    keys = config_keys(RunSpec)
    assert keys[:4] == ["task", "backbone.name", "backbone.revision", "backbone.quantize"]
    assert {"method.lora.target_modules", "train.eval_batch_size", "train.dev", "compose", "train_splits"} <= set(keys)
    assert "compose.block" not in keys and len(keys) == len(set(keys))


def test_table_parsing_expands_sibling_keys():
    text = ("### Configuration\n\n| key | default | meaning |\n|---|---|---|\n"
            "| `a.b.c` / `.d` | 1 | x |\n| `train.epochs` / `batch_size` | 3 / 8 | y |\n| `task` | - | z |\n"
            "\n### Next\n| `not.this` | | |\n")
    assert table_keys(text) == ["a.b.c", "a.b.d", "train.epochs", "train.batch_size", "task"]


def test_readme_config_table_lists_every_key():
    documented = table_keys(README.read_text(encoding="utf-8"))
    missing = [key for key in config_keys(RunSpec) if key not in documented]
    assert missing == [], f"README's config table lacks {missing}"
    unknown = [key for key in documented if key not in config_keys(RunSpec)]
    assert unknown == [], f"README's config table lists keys that are not config keys: {unknown}"
