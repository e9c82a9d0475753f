"""Exact checks for stepstone.config: strict building, file:line messages, overrides, round trips."""
from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Literal, Optional

import pytest
import yaml

from stepstone.config import build, dump_yaml, load_yaml, merge, parse_overrides, to_dict
from stepstone.errors import ConfigError


class Kind(str, Enum):
    FULL = "full"
    LORA = "lora"
    BOTTLENECK = "bottleneck"


@dataclass(frozen=True)
class Method:
    kind: Kind = Kind.LORA
    rank: int = 8
    targets: tuple[str, ...] = ("query", "value")


@dataclass(frozen=True)
class Train:
    lr: float
    epochs: int = 3
    batch_size: int = 32

    def __post_init__(self):
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


@dataclass(frozen=True)
class Run:
    name: str
    train: Train
    method: Method = Method()
    output: Optional[Path] = None
    langs: tuple[str, ...] = ("en",)
    weights: dict[str, float] = field(default_factory=dict)
    split: Literal["train", "dev"] = "dev"
    extra: Any = None
    seed: int | None = None


def write(tmp_path: Path, text: str, name: str = "run.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def problems(excinfo: pytest.ExceptionInfo) -> list[str]:
    return excinfo.value.problems


FULL = Run(name="x", train=Train(lr=3e-4, epochs=2), method=Method(Kind.BOTTLENECK, 16, ("output",)),
           output=Path("runs/x"), langs=("de", "sw"), weights={"de": 0.5, "sw": 1.0}, split="train",
           extra={"a": [1, 2]}, seed=7)


# --- build -------------------------------------------------------------------------------------------------


def test_build_converts_every_supported_type():
    data = {"name": "x", "train": {"lr": 3e-4, "epochs": 2},
            "method": {"kind": "BottleNeck", "rank": 16, "targets": "output"},  # case-insensitive, 1-tuple
            "output": "runs/x", "langs": ["de", "sw"], "weights": {"de": 0.5, "sw": 1}, "split": "train",
            "extra": {"a": [1, 2]}, "seed": 7}
    run = build(Run, data)
    assert run == FULL
    assert run.method.kind is Kind.BOTTLENECK
    assert run.output == Path("runs/x") and isinstance(run.output, Path)
    assert run.weights == {"de": 0.5, "sw": 1.0} and type(run.weights["sw"]) is float
    assert run.method.targets == ("output",)


def test_build_defaults_and_enum_member():
    run = build(Run, {"name": "y", "train": {"lr": 1}, "method": {"kind": Kind.FULL}})
    assert run == Run(name="y", train=Train(lr=1.0), method=Method(kind=Kind.FULL))
    assert type(run.train.lr) is float


def test_round_trip_build_to_dict():
    plain = to_dict(FULL)
    assert plain == {"name": "x", "train": {"lr": 3e-4, "epochs": 2, "batch_size": 32},
                     "method": {"kind": "bottleneck", "rank": 16, "targets": ["output"]},
                     "output": "runs/x", "langs": ["de", "sw"], "weights": {"de": 0.5, "sw": 1.0},
                     "split": "train", "extra": {"a": [1, 2]}, "seed": 7}
    assert build(Run, plain) == FULL
    none_kept = Run(name="n", train=Train(lr=0.1))
    assert to_dict(none_kept)["output"] is None and to_dict(none_kept)["seed"] is None
    assert build(Run, to_dict(none_kept)) == none_kept


def test_int_accepted_for_float_bool_rejected_for_int_and_float():
    assert build(Train, {"lr": 2}).lr == 2.0
    with pytest.raises(ConfigError) as exc:
        build(Train, {"lr": True, "epochs": False})
    assert problems(exc) == ["<config>: 'lr' must be a float, got True",
                             "<config>: 'epochs' must be an integer, got False"]


def test_bool_needs_real_bool_and_str_hint():
    @dataclass(frozen=True)
    class Flags:
        on: bool = False
        lang: str = "en"

    assert build(Flags, {"on": True}).on is True
    with pytest.raises(ConfigError) as exc:
        build(Flags, {"on": "yes please", "lang": False}, source="f.yaml")
    assert problems(exc) == ["f.yaml: 'on' must be a boolean (true/false), got 'yes please'",
                             "f.yaml: 'lang' must be a string, got False (quote it to keep it as text)"]


def test_problems_collected_across_the_tree():
    data = {"train": {"lr": "abc", "epoch": 3}, "method": {"kind": "lorra", "rank": 1.5},
            "langs": ["de", 3], "split": "test", "weights": {"de": "x"}, "output": 5}
    with pytest.raises(ConfigError) as exc:
        build(Run, data, source="run.yaml")
    assert problems(exc) == [  # field order; a section's unknown keys before its fields
        "run.yaml: missing key 'name'",
        "run.yaml: unknown key 'train.epoch' (valid: batch_size, epochs, lr), did you mean 'epochs'?",
        "run.yaml: 'train.lr' must be a float, got 'abc'",
        "run.yaml: 'method.kind' must be one of: bottleneck, full, lora (got 'lorra')",
        "run.yaml: 'method.rank' must be an integer, got 1.5",
        "run.yaml: 'output' must be a path (string), got 5",
        "run.yaml: 'langs[1]' must be a string, got 3 (quote it to keep it as text)",
        "run.yaml: 'weights.de' must be a float, got 'x'",
        "run.yaml: 'split' must be one of: dev, train (got 'test')",
    ]
    # one message for all of them, in the same order
    assert str(exc.value) == "; ".join(problems(exc))


def test_unknown_key_without_close_match_and_section_must_be_mapping():
    with pytest.raises(ConfigError) as exc:
        build(Run, {"name": "x", "train": 3, "zzz": 1})
    valid = "extra, langs, method, name, output, seed, split, train, weights"
    assert problems(exc) == [f"<config>: unknown key 'zzz' (valid: {valid})",
                             "<config>: 'train' must be a mapping of keys, got 3"]


def test_post_init_value_error_becomes_problem():
    with pytest.raises(ConfigError) as exc:
        build(Run, {"name": "x", "train": {"lr": -1}}, source="r.yaml", lines={("train",): 4})
    assert problems(exc) == ["r.yaml:4: 'train': lr must be > 0, got -1.0"]
    with pytest.raises(ConfigError) as exc:
        build(Train, {"lr": 0}, source="t.yaml")
    assert problems(exc) == ["t.yaml: lr must be > 0, got 0.0"]


def test_prefix_builds_a_section_with_full_paths_and_lines():
    lines = {("train", "lr"): 7, ("train",): 6}
    with pytest.raises(ConfigError) as exc:
        build(Train, {"lr": "fast", "epochs": 1.0}, source="c.yaml", lines=lines, prefix=("train",))
    assert problems(exc) == ["c.yaml:7: 'train.lr' must be a float, got 'fast'",
                             "c.yaml: 'train.epochs' must be an integer, got 1.0"]
    with pytest.raises(ConfigError) as exc:
        build(Train, {}, source="c.yaml", lines=lines, prefix=("train",))
    assert problems(exc) == ["c.yaml:6: missing key 'train.lr'"]  # the parent mapping's line


def test_optional_and_union():
    @dataclass(frozen=True)
    class U:
        size: int | str = 1

    assert build(U, {"size": "auto"}).size == "auto"
    assert build(Run, {"name": "x", "train": {"lr": 1}, "seed": None}).seed is None
    with pytest.raises(ConfigError) as exc:
        build(U, {"size": 1.5})
    assert problems(exc) == ["<config>: 'size' must be an integer or a string, got 1.5"]


def test_unsupported_field_type_is_a_programming_error():
    @dataclass(frozen=True)
    class Bad:
        items: list[int]

    with pytest.raises(TypeError, match="unsupported config field type"):
        build(Bad, {"items": [1]})


# --- files -------------------------------------------------------------------------------------------------


def test_yaml_typo_reports_file_line_and_suggestion(tmp_path):
    path = write(tmp_path, """
        name: demo
        train:
          lr: 3e-4
          epochs: 2
          batch_sise: 16
        method:
          kind: lora
    """)
    data, lines = load_yaml(path)
    assert data["train"]["lr"] == 0.0003  # PyYAML alone would read the string '3e-4'
    assert lines[("train", "batch_sise")] == 5 and lines[("method", "kind")] == 7
    with pytest.raises(ConfigError) as exc:
        build(Run, data, source=str(path), lines=lines)
    assert problems(exc) == [f"{path}:5: unknown key 'train.batch_sise' (valid: batch_size, epochs, lr), "
                             f"did you mean 'batch_size'?"]


def test_yaml_bad_enum_and_list_item_lines(tmp_path):
    path = write(tmp_path, """
        name: demo
        train: {lr: 0.1}
        method:
          kind: LoRRA
        langs:
          - de
          - 12
    """)
    data, lines = load_yaml(path)
    with pytest.raises(ConfigError) as exc:
        build(Run, data, source=str(path), lines=lines)
    assert problems(exc) == [
        f"{path}:4: 'method.kind' must be one of: bottleneck, full, lora (got 'LoRRA')",
        f"{path}:7: 'langs[1]' must be a string, got 12 (quote it to keep it as text)",
    ]


def test_duplicate_keys(tmp_path):
    path = write(tmp_path, """
        name: a
        train:
          lr: 1
          lr: 2
        name: b
    """)
    with pytest.raises(ConfigError) as exc:
        load_yaml(path)
    assert problems(exc) == [f"{path}:4: duplicate key 'lr'", f"{path}:5: duplicate key 'name'"]


def test_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as exc:
        load_yaml(path)
    assert problems(exc) == [f"config file not found: {path}"]


def test_yaml_syntax_error_has_line(tmp_path):
    path = write(tmp_path, """
        name: a
        train:
          lr: 1
         epochs: [1, 2
    """)
    with pytest.raises(ConfigError) as exc:
        load_yaml(path)
    [message] = problems(exc)
    assert message.startswith(f"{path}:4: invalid YAML: ")


def test_unclosed_bracket_names_the_line_that_opened_it(tmp_path):
    path = write(tmp_path, "task: a\ntrain:\n  epochs: [1\n")
    with pytest.raises(ConfigError) as exc:
        load_yaml(path)
    assert problems(exc) == [f"{path}:3: invalid YAML: while parsing a flow sequence; expected ',' or ']', "
                             "but got '<stream end>'"]


def test_control_character_has_line(tmp_path):
    path = write(tmp_path, "name: a\ntrain: \x07\n")
    with pytest.raises(ConfigError) as exc:
        load_yaml(path)
    assert problems(exc) == [f"{path}:2: invalid YAML: special characters are not allowed (character 0x7)"]


def test_merge_keys_are_not_duplicates(tmp_path):
    path = write(tmp_path, """
        base: &b {lr: 1, epochs: 2}
        train:
          <<: *b
          lr: 3
    """)
    data, lines = load_yaml(path)
    assert data["train"] == {"lr": 3, "epochs": 2}
    assert lines[("train", "lr")] == 4


def test_top_level_must_be_mapping(tmp_path):
    with pytest.raises(ConfigError) as exc:
        load_yaml(write(tmp_path, "- a\n- b\n", "list.yaml"))
    expected = "expected a mapping of keys at the top level"
    assert problems(exc) == [f"{tmp_path / 'list.yaml'}:1: {expected}, got a list"]
    with pytest.raises(ConfigError) as exc:
        load_yaml(write(tmp_path, "# only a comment\n", "empty.yaml"))
    assert problems(exc) == [f"{tmp_path / 'empty.yaml'}: {expected}, the file is empty"]


def test_python_tags_are_refused(tmp_path):
    path = write(tmp_path, "name: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(ConfigError) as exc:
        load_yaml(path)
    [message] = problems(exc)
    assert message.startswith(f"{path}:1: invalid YAML: ") and "python/object/apply" in message


def test_dump_yaml_sorted_and_reloadable(tmp_path):
    run = Run(name="1e5", train=Train(lr=1e-5), langs=("no", "de"), output=Path("out"))  # tricky strings
    text = dump_yaml(run)
    top_keys = [line.split(":")[0] for line in text.splitlines() if line and not line.startswith((" ", "-"))]
    assert top_keys == sorted(top_keys) == ["extra", "langs", "method", "name", "output", "seed", "split",
                                            "train", "weights"]
    assert "name: '1e5'" in text and "- 'no'" in text
    path = write(tmp_path, text, "dumped.yaml")
    data, lines = load_yaml(path)
    assert build(Run, data, source=str(path), lines=lines) == run
    assert yaml.safe_load(text)["train"] == {"batch_size": 32, "epochs": 3, "lr": 1e-5}


# --- overrides and merge -----------------------------------------------------------------------------------


def test_parse_overrides_values():
    out = parse_overrides(["train.lr=3e-4", "method.kind=lora", "langs=[en, de]", "train.epochs=5",
                           "debug=true", "output=null", "name='1e5'", "ratio=-.5E+2", "expr=a=b"])
    assert out == {"train": {"lr": 0.0003, "epochs": 5}, "method": {"kind": "lora"}, "langs": ["en", "de"],
                   "debug": True, "output": None, "name": "1e5", "ratio": -50.0, "expr": "a=b"}
    assert type(out["train"]["epochs"]) is int


def test_parse_overrides_last_wins():
    assert parse_overrides(["train.lr=1", "train.lr=2"]) == {"train": {"lr": 2}}
    assert parse_overrides(["train=3", "train.lr=2"]) == {"train": {"lr": 2}}
    assert parse_overrides(["train.lr=2", "train=3"]) == {"train": 3}


def test_parse_overrides_bad_items_reported_together():
    with pytest.raises(ConfigError) as exc:
        parse_overrides(["train.lr", "=3", "a..b=1", "ok=1"])
    hint = "expected KEY=VALUE, e.g. train.lr=3e-4"
    assert problems(exc) == [f"bad override 'train.lr': {hint}", f"bad override '=3': {hint}",
                             f"bad override 'a..b=1': {hint}"]
    with pytest.raises(ConfigError) as exc:
        parse_overrides(["langs=[en, de"])
    [message] = problems(exc)
    assert message.startswith("bad override 'langs=[en, de': invalid value: ")


def test_merge_precedence_and_inputs_untouched():
    base = {"train": {"lr": 0.1, "epochs": 3}, "langs": ["en"], "name": "a"}
    over = {"train": {"lr": 0.2}, "langs": ["de", "sw"], "method": {"kind": "full"}}
    merged = merge(base, over)
    assert merged == {"train": {"lr": 0.2, "epochs": 3}, "langs": ["de", "sw"], "name": "a",
                      "method": {"kind": "full"}}
    merged["train"]["epochs"] = 99
    merged["langs"].append("x")
    assert base == {"train": {"lr": 0.1, "epochs": 3}, "langs": ["en"], "name": "a"}
    assert over == {"train": {"lr": 0.2}, "langs": ["de", "sw"], "method": {"kind": "full"}}
    assert merge({"train": {"lr": 1}}, {"train": 5}) == {"train": 5}


def test_file_plus_overrides_end_to_end(tmp_path):
    path = write(tmp_path, "name: demo\ntrain:\n  lr: 0.1\nmethod:\n  kind: full\n")
    data, lines = load_yaml(path)
    run = build(Run, merge(data, parse_overrides(["train.lr=3e-4", "method.kind=LORA", "langs=de"])),
                source=str(path), lines=lines)
    assert run == Run(name="demo", train=Train(lr=3e-4), method=Method(kind=Kind.LORA), langs=("de",))
