"""Interoperability on the tiny backbone: LoRA zoo entries to and from PEFT folders, and zoo entries loaded
with the adapters library's own `load_adapter` (AdapterHub layout). Outputs are compared bitwise."""
from __future__ import annotations

import json
import pickle
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from stepstone import methods
from stepstone.artifacts import sha256
from stepstone.backbone import load_backbone
from stepstone.errors import StepstoneError
from stepstone.interop import MODULES, export_adapter, import_adapter, target_regex
from stepstone.pipelines import load_for_inference, load_run_spec, train_run
from stepstone.specs import BackboneSpec
from stepstone.zoo import Zoo

# a high learning rate so that the trained LoRA moves the hidden states visibly (B starts at zero)
FAST = ["train.epochs=1", "train.max_train_examples=32", "train.max_eval_examples=16", "train.batch_size=16",
        "train.lr=5e-2"]
ALL_MODULES = "method.lora.target_modules=[q, k, v, intermediate, output]"
SENTENCES = ["the cat sat on the mat", "a dog runs", "nobody saw the red bird yesterday"]
PEFT_FILES = ["README.md", "adapter_config.json", "adapter_model.safetensors", "stepstone_heads",
              "stepstone_heads/toy-pair", "stepstone_heads/toy-pair/head_config.json",
              "stepstone_heads/toy-pair/model_head.safetensors", "stepstone_manifest.json"]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> Zoo:
    """A LoRA entry on every module adapters' LoRA can update, and a bottleneck entry, trained once."""
    zoo = Zoo(tmp_path_factory.mktemp("zoo"))
    train_run(load_run_spec(None, {"task": ["toy-pair"], "method": {"kind": "lora"}, "name": "pair-lora"},
                            [*FAST, ALL_MODULES]), zoo=zoo)
    train_run(load_run_spec(None, {"task": ["toy-tags"], "name": "tags-bn"}, FAST), zoo=zoo)
    return zoo


@pytest.fixture(scope="module")
def exported(zoo, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("peft") / "pair-lora"
    export_adapter("pair-lora", out, "peft", zoo=zoo)
    return out


def rehash(folder: Path) -> None:
    """Re-record the sha256 of every file the manifest lists (a deliberately edited entry that loads past
    its hash check, so the check behind it is what the test sees)."""
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"] = {f: sha256(folder / f) for f in manifest["files"]}
    (folder / "manifest.json").write_text(json.dumps(manifest))


def plain_encoder(backbone=None):
    """The bare transformers XLM-R encoder with the tiny backbone's weights (PEFT's base model)."""
    from transformers import XLMRobertaModel

    backbone = backbone or load_backbone(BackboneSpec("tiny"))
    encoder = XLMRobertaModel(backbone.model.config)
    # the adapters model's base also holds the library's prompt-tuning pool; it is not an encoder weight
    weights = {k: v for k, v in backbone.model.base_model.state_dict().items() if not k.startswith("prompt_tuning.")}
    encoder.load_state_dict(weights, strict=True)
    return encoder.eval()


def inputs():
    tokenizer = load_backbone(BackboneSpec("tiny")).tokenizer
    return dict(tokenizer(SENTENCES, padding=True, return_tensors="pt"))


def hidden(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).last_hidden_state


def stepstone_hidden(path: Path, batch) -> torch.Tensor:
    """Encoder output of stepstone's own model with the entry active."""
    loaded, _, _ = load_for_inference(path)
    return hidden(loaded.model.base_model, batch)


def entry_lora(path: Path, name: str) -> dict[str, torch.Tensor]:
    """The entry's LoRA tensors keyed without the adapter name."""
    tensors = load_file(str(path / "adapter.safetensors"))
    return {k.replace(f".loras.{name}.", ".loras.*."): v for k, v in tensors.items()}


# ---------------------------------------------------------------------------------------------- export


def test_export_writes_a_peft_folder_that_peft_loads_with_identical_outputs(zoo, exported):
    from peft import PeftModel

    assert sorted(str(p.relative_to(exported)) for p in exported.rglob("*")) == PEFT_FILES
    config = json.loads((exported / "adapter_config.json").read_text())
    assert (config["peft_type"], config["r"], config["lora_alpha"], config["bias"]) == ("LORA", 8, 16, "none")
    names = {f"base_model.model.encoder.layer.{i}.{m}.lora_{p}.weight" for i in (0, 1) for m in MODULES for p in "AB"}
    peft_weights = load_file(str(exported / "adapter_model.safetensors"))
    assert set(peft_weights) == names
    original = load_file(str(zoo.path("pair-lora") / "adapter.safetensors"))
    for key, tensor in original.items():
        renamed = "base_model.model." + key.removeprefix("roberta.").replace(".loras.pair-lora.", ".") + ".weight"
        assert torch.equal(peft_weights[renamed], tensor), key

    model = PeftModel.from_pretrained(plain_encoder(), str(exported)).eval()
    wrapped = {n.removeprefix("base_model.model.").removesuffix(".lora_A") for n, _ in model.named_modules()
               if n.endswith(".lora_A")}
    # exactly adapters' five modules per layer; the FFN's output.dense, never attention.output.dense
    assert wrapped == {f"encoder.layer.{i}.{m}" for i in (0, 1) for m in MODULES}
    batch = inputs()
    theirs, ours = hidden(model, batch), stepstone_hidden(zoo.path("pair-lora"), batch)
    assert torch.equal(theirs, ours)
    with model.disable_adapter():
        base = hidden(model, batch)
    assert (ours - base).abs().max() > 1e-3  # the LoRA changes the encoder, so the equality above means something


def test_target_regex_selects_the_ffn_output_of_the_bare_encoder_only():
    pattern = target_regex({"output.dense", "attention.self.query"}, [0, 11])
    assert re.fullmatch(pattern, "encoder.layer.11.output.dense")
    assert re.fullmatch(pattern, "encoder.layer.0.attention.self.query")
    for other in ("encoder.layer.0.attention.output.dense", "encoder.layer.1.output.dense",
                  "encoder.layer.0.intermediate.dense", "encoder.layer.0.output.dense.lora_A",
                  "roberta.encoder.layer.0.attention.self.query"):
        assert not re.fullmatch(pattern, other), other


def test_peft_refuses_a_task_model_and_loads_onto_its_encoder(zoo, exported):
    """The saved names are the bare encoder's: on a task model PEFT fails loudly (instead of loading
    nothing); on the task model's encoder module it adapts the task model in place."""
    from peft import PeftModel
    from peft.tuners.tuners_utils import NoMatchingPeftModuleError
    from transformers import XLMRobertaForSequenceClassification

    backbone = load_backbone(BackboneSpec("tiny"))
    task_model = XLMRobertaForSequenceClassification(backbone.model.config).eval()
    task_model.roberta.load_state_dict(plain_encoder(backbone).state_dict(), strict=False)  # no pooler there
    with pytest.raises(NoMatchingPeftModuleError, match="not found in the base model"):
        PeftModel.from_pretrained(task_model, str(exported))
    PeftModel.from_pretrained(task_model.roberta, str(exported))
    batch = inputs()
    assert torch.equal(hidden(task_model.roberta, batch), stepstone_hidden(zoo.path("pair-lora"), batch))


def test_export_keeps_the_head_and_manifest_next_to_the_peft_files(zoo, exported):
    entry = zoo.get("pair-lora")
    assert json.loads((exported / "stepstone_manifest.json").read_text()) == entry.manifest
    for name in ("head_config.json", "model_head.safetensors"):
        assert (exported / "stepstone_heads" / "toy-pair" / name).read_bytes() == (entry.path / name).read_bytes()
    assert "PEFT does not load the task head" in (exported / "README.md").read_text()


@pytest.mark.parametrize("edit,message", [
    ({"composition_mode": "scale"}, "composition_mode 'scale' scales activations ((IA)^3)"),
    ({"use_gating": True}, "use_gating: a learned gate"),
    ({"use_dora": True}, "use_dora"),
], ids=["scale", "gating", "dora"])
def test_export_refuses_lora_variants_peft_cannot_express(zoo, tmp_path, edit, message):
    variant = Zoo(tmp_path / "zoo")  # a copy of the entry (same name) with its adapter config edited
    shutil.copytree(zoo.path("pair-lora"), variant.path("pair-lora"))
    config_path = variant.path("pair-lora") / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["config"].update(edit)
    config_path.write_text(json.dumps(config))
    rehash(variant.path("pair-lora"))  # as if the entry had been written that way: its hashes check out
    with pytest.raises(StepstoneError, match=re.escape(f"cannot export 'pair-lora' to PEFT: {message}")):
        export_adapter("pair-lora", tmp_path / "out", zoo=variant)
    assert not (tmp_path / "out").exists()


def test_export_refusals(zoo, tmp_path):
    with pytest.raises(StepstoneError, match=r"^cannot export 'tags-bn' to PEFT: it is a bottleneck adapter and "
                                             r"PEFT has no bottleneck adapters; only LoRA entries export$"):
        export_adapter("tags-bn", tmp_path / "a", zoo=zoo)
    with pytest.raises(StepstoneError, match=r"^unknown format 'onnx' \(valid: peft\)$"):
        export_adapter("pair-lora", tmp_path / "b", "onnx", zoo=zoo)
    with pytest.raises(StepstoneError, match=r"^no zoo entry 'ghost'"):
        export_adapter("ghost", tmp_path / "c", zoo=zoo)
    (tmp_path / "d").mkdir()
    with pytest.raises(StepstoneError, match="already exists"):
        export_adapter("pair-lora", tmp_path / "d", zoo=zoo)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


# ---------------------------------------------------------------------------------------------- import


def test_export_then_import_round_trips_weights_head_and_outputs(zoo, exported):
    imported = import_adapter(exported, "pair-again", "peft", zoo=zoo)
    assert imported.heads == ("pair-again",)
    original, again = zoo.get("pair-lora"), imported.entry
    assert entry_lora(original.path, "pair-lora").keys() == entry_lora(again.path, "pair-again").keys()
    for key, tensor in entry_lora(original.path, "pair-lora").items():
        assert torch.equal(tensor, entry_lora(again.path, "pair-again")[key]), key
    m0, m1 = original.manifest, again.manifest
    assert m1["method"] == m0["method"] and m1["backbone"] == m0["backbone"]
    assert m1["trainable"]["parameters"] == m0["trainable"]["parameters"]  # LoRA + head
    assert m1["tasks"] == [{**m0["task"], "head": "pair-again"}] and m1["task"] == m1["tasks"][0]
    assert (m1["metrics"], m1["spec"], m1["history"]) == (m0["metrics"], m0["spec"], m0["history"])
    assert m1["imported"]["stepstone_entry"] == "pair-lora" and m1["imported"]["heads"] is True
    assert sorted(m1["files"]) == ["adapter.safetensors", "adapter_config.json", "head_config.json",
                                   "model_head.safetensors"]  # every file of the entry is hashed

    batch = inputs()
    a, _, _ = load_for_inference(original.path)
    b, _, _ = load_for_inference(again.path)
    with torch.no_grad():
        assert torch.equal(a.model(**batch).logits, b.model(**batch).logits)


def test_round_trip_brings_back_every_head_of_a_multi_task_entry(tmp_path):
    zoo = Zoo(tmp_path / "zoo")
    train_run(load_run_spec(None, {"task": ["toy-sentiment", "toy-tags"], "method": {"kind": "lora"}, "name": "mt"},
                            FAST), zoo=zoo)
    out = export_adapter("mt", tmp_path / "peft", zoo=zoo).path
    assert sorted(p.name for p in (out / "stepstone_heads").iterdir()) == ["toy-sentiment", "toy-tags"]
    imported = import_adapter(out, "mt2", zoo=zoo)
    assert imported.heads == ("mt2", "mt2_toy-tags")
    assert [t["head"] for t in imported.entry.manifest["tasks"]] == ["mt2", "mt2_toy-tags"]
    batch = inputs()
    a, _, _ = load_for_inference(zoo.path("mt"))
    b, _, _ = load_for_inference(imported.entry.path)
    a.model.active_head, b.model.active_head = "mt_toy-tags", "mt2_toy-tags"
    with torch.no_grad():
        theirs, ours = a.model(**batch).logits, b.model(**batch).logits
    assert theirs.shape[-1] == 5 and torch.equal(theirs, ours)


def peft_folder(tmp_path: Path, base=None, **lora) -> Path:
    """A LoRA adapter written by peft itself onto the tiny encoder; B random so that it is not a no-op."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    settings = dict(r=4, lora_alpha=8, target_modules=["query", "value"], init_lora_weights=False)
    model = get_peft_model(base if base is not None else plain_encoder(), LoraConfig(**{**settings, **lora}))
    model.save_pretrained(str(tmp_path / "peft-out"))
    return tmp_path / "peft-out"


def test_import_a_folder_written_by_peft_gives_its_outputs(tmp_path):
    from peft import PeftModel

    folder = peft_folder(tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "adapter_config.json", "adapter_model.safetensors"]
    zoo = Zoo(tmp_path / "zoo")
    imported = import_adapter(folder, "from-peft", zoo=zoo, backbone="tiny")
    manifest = imported.entry.manifest
    assert manifest["method"] == {"kind": "lora", "settings": {"r": 4, "alpha": 8, "dropout": 0.0,
                                                               "target_modules": ["q", "v"]}}
    assert (manifest["kind"], manifest["mode"], manifest["tasks"]) == ("adapter", "adapter", [])
    assert manifest["task"]["name"] == "-" and manifest["metrics"] == {"dev": {}, "best_epoch": None, "main": None}
    assert manifest["backbone"]["fingerprint"] == load_backbone(BackboneSpec("tiny")).fingerprint
    assert manifest["trainable"]["parameters"] == 2 * 2 * (4 * 128 + 128 * 4)  # 2 layers x q, v x (A + B)
    assert sorted(p.name for p in imported.entry.path.iterdir()) == ["adapter.safetensors", "adapter_config.json",
                                                                     "manifest.json"]

    backbone = load_backbone(BackboneSpec("tiny"))
    methods.load_adapter(backbone.model, imported.entry.path, "from-peft", with_head=False)
    backbone.model.set_active_adapters("from-peft")
    batch = inputs()
    ours = hidden(backbone.model.base_model, batch)
    theirs = hidden(PeftModel.from_pretrained(plain_encoder(), str(folder)).eval(), batch)
    assert torch.equal(ours, theirs)
    assert (ours - hidden(plain_encoder(), batch)).abs().max() > 1e-3


def test_import_accepts_peft_on_a_task_model(tmp_path):
    """PEFT on XLMRobertaForTokenClassification (no task_type): tensors carry the `roberta.` prefix."""
    from transformers import XLMRobertaForTokenClassification

    model = XLMRobertaForTokenClassification(load_backbone(BackboneSpec("tiny")).model.config)
    folder = peft_folder(tmp_path, base=model, target_modules=["key", "dense"],
                         exclude_modules=r".*attention\.output\.dense")
    keys = load_file(str(folder / "adapter_model.safetensors"))
    assert {k.split(".encoder.")[0] for k in keys} == {"base_model.model.roberta"}
    imported = import_adapter(folder, "tok", zoo=Zoo(tmp_path / "zoo"), backbone="tiny")
    assert imported.entry.manifest["method"]["settings"]["target_modules"] == ["k", "intermediate", "output"]
    stored = entry_lora(imported.entry.path, "tok")
    for key, tensor in keys.items():
        ours = "roberta." + key.removeprefix("base_model.model.roberta.").replace(".lora_", ".loras.*.lora_")
        assert torch.equal(stored[ours.removesuffix(".weight")], tensor), key


def _edit_config(folder: Path, **changes) -> None:
    path = folder / "adapter_config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def _add_tensor(folder: Path, key: str, shape: tuple[int, ...]) -> None:
    path = folder / "adapter_model.safetensors"
    tensors = load_file(str(path))
    tensors[key] = torch.zeros(shape)
    save_file(tensors, str(path))


def _drop_tensors(folder: Path, part: str) -> None:
    path = folder / "adapter_model.safetensors"
    save_file({k: v for k, v in load_file(str(path)).items() if part not in k}, str(path))


PREFIX = "base_model.model.encoder.layer.0."
REFUSED = [
    ("ia3", lambda f: _edit_config(f, peft_type="IA3"), "it is a PEFT IA3 adapter; only LORA imports"),
    ("dora", lambda f: _edit_config(f, use_dora=True), "use_dora"),
    ("rslora", lambda f: _edit_config(f, use_rslora=True), "use_rslora (scaling alpha/sqrt(r)"),
    ("bias", lambda f: _edit_config(f, bias="all"), "bias 'all'"),
    ("modules_to_save", lambda f: _edit_config(f, modules_to_save=["classifier"]), "modules_to_save ['classifier']"),
    ("layers", lambda f: _edit_config(f, layers_to_transform=[0]),
     "setting(s) stepstone's LoRA has no equivalent for: layers_to_transform=[0]"),
    ("pissa", lambda f: _edit_config(f, init_lora_weights="pissa"), "init_lora_weights 'pissa'"),
    ("alpha", lambda f: _edit_config(f, lora_alpha=2.5), "lora_alpha 2.5 (stepstone's lora.alpha is an integer)"),
    ("unknown", lambda f: _edit_config(f, frobnicate=1), "unknown PEFT setting(s) frobnicate"),
    ("attention-output", lambda f: (_add_tensor(f, PREFIX + "attention.output.dense.lora_A.weight", (4, 128)),
                                    _add_tensor(f, PREFIX + "attention.output.dense.lora_B.weight", (128, 4))),
     "it updates attention.output.dense, which adapters' LoRA cannot target (it can: attention.self.query"),
    ("embedding", lambda f: _add_tensor(f, "base_model.model.embeddings.word_embeddings.lora_embedding_A", (4, 10)),
     "holds tensors that are not LoRA A/B matrices of encoder layers (base_model.model.embeddings"),
    ("one-layer", lambda f: _drop_tensors(f, ".layer.1.attention.self.value."), "its layers update different modules"),
]


@pytest.fixture(scope="module")
def peft_template(tmp_path_factory) -> Path:
    return peft_folder(tmp_path_factory.mktemp("template"))


@pytest.mark.parametrize("edit,message", [(e, m) for _, e, m in REFUSED], ids=[i for i, _, _ in REFUSED])
def test_import_refuses_what_adapters_lora_cannot_compute(peft_template, tmp_path, edit, message):
    folder = tmp_path / "adapter"
    shutil.copytree(peft_template, folder)
    edit(folder)
    zoo = Zoo(tmp_path / "zoo")
    with pytest.raises(StepstoneError, match=re.escape(message)):
        import_adapter(folder, "x", zoo=zoo, backbone="tiny")
    assert not zoo.root.exists()


def test_import_needs_a_backbone_when_the_folder_names_none(peft_template, tmp_path):
    assert json.loads((peft_template / "adapter_config.json").read_text())["base_model_name_or_path"] is None
    with pytest.raises(StepstoneError, match=r"does not say which backbone it adapts \(no base_model_name_or_path\): "
                                             r"give --backbone"):
        import_adapter(peft_template, "x", zoo=Zoo(tmp_path / "zoo"))
    assert not (tmp_path / "zoo").exists()


def test_import_never_unpickles_a_bin_only_folder(tmp_path):
    folder, marker = tmp_path / "pickled", tmp_path / "unpickled"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4, "lora_alpha": 8}))

    class Trap:  # unpickling this creates `marker`
        def __reduce__(self):
            return open, (str(marker), "w")

    (folder / "adapter_model.bin").write_bytes(pickle.dumps(Trap()))
    with pytest.raises(StepstoneError, match=r"holds only adapter_model.bin, a pickle, which stepstone never loads"):
        import_adapter(folder, "x", zoo=Zoo(tmp_path / "zoo"), backbone="tiny")
    assert not marker.exists() and not (tmp_path / "zoo").exists()


def test_import_refuses_a_backbone_it_does_not_fit(tmp_path):
    from transformers import XLMRobertaConfig, XLMRobertaModel

    small = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=64)
    folder = peft_folder(tmp_path, base=XLMRobertaModel(small))
    with pytest.raises(StepstoneError, match=r"it does not fit backbone 'tiny' \(adapter vs backbone shapes: "
                                             r"encoder.layer.0.attention.self.query.lora_A \[4, 32\] vs \[4, 128\]"):
        import_adapter(folder, "x", zoo=Zoo(tmp_path / "zoo"), backbone="tiny")
    assert not (tmp_path / "zoo").exists()


def test_import_checks_the_exported_backbone_fingerprint(exported, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(exported, folder)
    manifest = json.loads((folder / "stepstone_manifest.json").read_text())
    manifest["backbone"]["fingerprint"] = "0000000000000000"
    (folder / "stepstone_manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StepstoneError, match=r"was trained on backbone 'tiny' \(fingerprint 0000000000000000\), "
                                             r"not on the loaded 'tiny'"):
        import_adapter(folder, "x", zoo=Zoo(tmp_path / "zoo"))
    shutil.rmtree(folder / "stepstone_heads")
    with pytest.raises(StepstoneError, match=r"names task head\(s\) toy-pair that stepstone_heads/ lacks"):
        import_adapter(folder, "x", zoo=Zoo(tmp_path / "zoo"))
    assert not (tmp_path / "zoo").exists()


# ---------------------------------------------------------------------------------------------- AdapterHub


@pytest.mark.parametrize("name", ["pair-lora", "tags-bn"])
def test_zoo_entries_load_with_the_adapters_library(zoo, tmp_path, name):
    """A fresh adapters.AutoAdapterModel of the same backbone loads an entry (adapter + head) with the
    library's own load_adapter and gives stepstone's logits."""
    from adapters import AutoAdapterModel

    backbone = load_backbone(BackboneSpec("tiny"))
    backbone.model.save_pretrained(str(tmp_path / "tiny"))  # the backbone as a plain model folder
    model = AutoAdapterModel.from_pretrained(str(tmp_path / "tiny")).eval()
    entry = zoo.path(name)
    # adapters 1.3 reads pytorch_adapter.bin (a pickle) unless told to use safetensors: zoo entries have none
    with pytest.raises(OSError, match="Unable to load weights"):
        model.load_adapter(str(entry))
    assert model.load_adapter(str(entry), use_safetensors=True) == name
    model.set_active_adapters(name)
    model.active_head = name

    loaded, manifest, _ = load_for_inference(entry)
    batch = inputs()
    with torch.no_grad():
        theirs, ours = model(**batch).logits, loaded.model(**batch).logits
    assert theirs.shape[-1] == len(manifest["task"]["labels"]) and torch.equal(theirs, ours)
