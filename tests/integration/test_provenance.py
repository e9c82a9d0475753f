"""Where backbones and data came from (stepstone.provenance): hub commits from the local Hugging Face cache, a
hub backbone loaded from a fake cache (offline), hub datasets, and which backbones can be told apart unloaded."""
from __future__ import annotations

import json

import datasets
import huggingface_hub.constants
import pytest
import transformers.utils.hub

from stepstone import pipelines, provenance
from stepstone.backbone import load_backbone
from stepstone.errors import StepstoneError
from stepstone.specs import BackboneSpec, Block, Composition, RunSpec, TrainSpec
from stepstone.tasks import Split, get_task
from stepstone.tasks.examples import load_examples
from stepstone.zoo import Zoo

COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER = "89abcdef0123456789abcdef0123456789abcdef"
HUB_ID = "stepstone-test/tiny-xlmr"


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """An empty Hugging Face hub cache that both huggingface_hub and transformers read from."""
    root = tmp_path / "hf-cache"
    root.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(root))
    monkeypatch.setattr(transformers.utils.hub, "TRANSFORMERS_CACHE", str(root))
    return root


def cache_ref(root, kind: str, repo: str, commit: str, ref: str = "main"):
    folder = root / f"{kind}s--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / ref).write_text(commit)
    return folder / "snapshots" / commit


def test_hub_commit_from_the_cache(hf_cache):
    assert provenance.hub_commit(HUB_ID) is None  # not cached
    cache_ref(hf_cache, "model", HUB_ID, COMMIT)
    cache_ref(hf_cache, "model", HUB_ID, OTHER, ref="v2")
    cache_ref(hf_cache, "dataset", "org/data", OTHER)
    assert provenance.hub_commit(HUB_ID) == COMMIT
    assert provenance.hub_commit(HUB_ID, "v2") == OTHER
    assert provenance.hub_commit(HUB_ID, "v3") is None
    assert provenance.hub_commit("any/model", OTHER) == OTHER  # a commit is its own answer
    assert provenance.hub_commit("org/data", repo_type="dataset") == OTHER


def test_a_hub_backbone_records_its_commit_and_members_reuse_it(hf_cache, tmp_path):
    tiny = load_backbone(BackboneSpec("tiny"))
    snapshot = cache_ref(hf_cache, "model", HUB_ID, COMMIT)
    tiny.model.save_pretrained(snapshot)
    tiny.tokenizer.save_pretrained(snapshot)
    zoo = Zoo(tmp_path / "zoo")
    train = TrainSpec(epochs=1, batch_size=16, max_train_examples=16, max_eval_examples=8, select_best=False)
    member = pipelines.train_run(RunSpec(task="toy-sentiment", name="sent", backbone=BackboneSpec(HUB_ID), train=train),
                                 zoo=zoo)
    record = member.manifest["backbone"]
    assert record["source"] == {"hub": HUB_ID, "revision": None, "commit": COMMIT}
    assert record["name"] == HUB_ID and record["fingerprint"] == tiny.fingerprint
    # --on without a backbone: the members' hub id
    spec = pipelines.load_run_spec(None, {"task": ["toy-tags"], "compose": {"block": "stack", "members": ["sent"]}},
                                   zoo=zoo)
    assert spec.backbone == BackboneSpec(HUB_ID)
    with pytest.raises(StepstoneError) as err:
        pipelines.load_run_spec(None, {"task": ["toy-tags"], "backbone": {"name": "tiny"},
                                       "compose": {"block": "stack", "members": ["sent"]}}, zoo=zoo)
    assert str(err.value) == (f"backbone 'tiny' is not the one the composition members were trained on: 'sent' was "
                              f"trained on '{HUB_ID}' (commit {COMMIT[:12]}); leave --backbone out to train on theirs")
    assert pipelines.load_run_spec(None, {"task": ["toy-tags"], "backbone": {"name": HUB_ID},
                                          "compose": {"block": "stack", "members": ["sent"]}}, zoo=zoo).compose \
        == Composition(Block.STACK, ("sent",))


def test_a_hub_dataset_is_recorded_with_its_commit(hf_cache, monkeypatch):
    rows = datasets.Dataset.from_list([{"sentence1": "a", "sentence2": "b", "label": 1}])
    monkeypatch.setattr(datasets, "load_dataset", lambda path, config=None, split=None: rows)
    cache_ref(hf_cache, "dataset", "google-research-datasets/paws-x", COMMIT)
    with provenance.recording() as seen:
        examples = load_examples(get_task("pawsx"), Split.TRAIN, "de")
    assert examples == [{"text": "a", "text_pair": "b", "label": "1"}]
    assert seen == [{"hub": "google-research-datasets/paws-x", "config": "de", "split": "train", "commit": COMMIT}]
    assert provenance.data_source(seen, "train", "de", 1, None) == {"split": "train", "language": "de", "examples": 1,
                                                                   "sources": seen}
    with provenance.recording() as generated:
        load_examples(get_task("toy-tags"), Split.TRAIN, "en")
    assert generated == [] and provenance.data_source(generated, "train", "en", 1, None) is None


def test_what_can_be_told_apart_without_loading():
    local = {"local": "/a", "sha256": "1" * 64, "files": {}}
    hub = {"hub": "org/m", "revision": None, "commit": COMMIT}
    record = {"name": "/a", "fingerprint": "f", "source": local}
    same = provenance.same_backbone
    assert same(None, "tiny", {"name": "tiny", "fingerprint": "f"}) is True
    assert same(None, "tiny", record) is False
    assert same(local, "/a", {"name": "tiny", "fingerprint": "f"}) is False
    assert same({**local, "local": "/b"}, "/b", record) is True  # a copy elsewhere: the same content
    assert same({**local, "sha256": "2" * 64}, "/a", record) is False
    assert same(hub, "org/m", record) is None  # a hub id against a folder: only the fingerprints can tell
    hub_record = {"name": "org/m", "fingerprint": "f", "source": hub}
    assert same(hub, "org/m", hub_record) is True
    assert same({**hub, "commit": OTHER}, "org/m", hub_record) is False
    assert same({**hub, "hub": "org/alias", "commit": None}, "org/alias", hub_record) is None
    assert same({**hub, "commit": None}, "org/m", hub_record) is True  # same id and revision
    assert same(local, "/a", {"name": "older", "fingerprint": "f"}) is None  # a manifest without a source


def test_location_prefers_the_absolute_folder():
    assert provenance.location({"name": "bb", "source": {"local": "/data/bb", "sha256": "x"}}) == "/data/bb"
    assert provenance.location({"name": "org/m", "source": {"hub": "org/m", "commit": None}}) == "org/m"
    assert provenance.location({"name": "tiny"}) == "tiny"


def test_folder_hash_is_memoised_and_follows_changes(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"a": 1}))
    first = provenance.file_sha256(path)
    assert provenance.file_sha256(path) == first
    path.write_text(json.dumps({"a": 22}))  # another size and mtime: hashed again
    assert provenance.file_sha256(path) != first
    (tmp_path / "README.md").write_text("not a model file")
    assert list(provenance.folder_files(tmp_path)) == ["config.json"]


def test_a_file_is_read_for_hashing_once_while_unchanged(tmp_path, monkeypatch):
    """review r3: the test above passes without the memo too; this one counts the passes over the file."""
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"weights")
    opened = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda file, *a, **k: (opened.append(str(file)), real_open(file, *a, **k))[1])
    digest = provenance.file_sha256(path)
    assert provenance.folder_files(tmp_path) == {"model.safetensors": digest}  # checked before loading, recorded after
    assert provenance.file_sha256(path) == digest and opened == [str(path)]
    path.write_bytes(b"other weights")
    assert provenance.file_sha256(path) != digest and opened == [str(path)] * 2


@pytest.mark.real
def test_a_real_backbone_folder_is_hashed_by_its_model_files(e5_backbone):
    import hashlib

    source = provenance.backbone_source(str(e5_backbone), None)
    names = ["config.json", "model.safetensors", "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"]
    assert list(source["files"]) == names  # not the builder's stepstone-e5-small.ok marker
    assert source["files"]["config.json"] == hashlib.sha256((e5_backbone / "config.json").read_bytes()).hexdigest()
    assert source["sha256"] == provenance.folder_digest(source["files"]) and source["local"] == str(e5_backbone.resolve())
