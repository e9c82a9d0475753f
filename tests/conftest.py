"""Suite-wide settings: offline, one torch thread, and the `real` marker's resources."""
from __future__ import annotations

import os
import subprocess
import tempfile
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a stray hub lookup fails at once instead of retrying ~23 s
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["STEPSTONE_THREADS"] = "1"

import torch  # noqa: E402

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("STEPSTONE_SHARED", REPO.parent / "shared"))
E5_BUILDER = SHARED / "backbones" / "multilingual_e5_small.py"
E5_CACHE = Path(os.environ.get("STEPSTONE_CACHE", Path.home() / ".cache" / "stepstone")) / "multilingual-e5-small"
# tokenised rows (stepstone.tokenized) are cached for this session only, never in the user's cache
os.environ["STEPSTONE_CACHE"] = tempfile.mkdtemp(prefix="stepstone-test-cache-")


@pytest.fixture(autouse=True)
def _isolated_zoo(tmp_path, monkeypatch):
    """No test touches the checkout's adapters_zoo/ or the user's STEPSTONE_ZOO."""
    monkeypatch.setenv("STEPSTONE_ZOO", str(tmp_path / "zoo"))


class Notes:
    """A progress reporter that shows no bars and keeps its notes (`stepstone.progress.note`)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, description, total):
        from stepstone.progress import silent

        return silent(description, total)

    def note(self, line: str) -> None:
        self.lines.append(line)


@pytest.fixture
def notes() -> Notes:
    return Notes()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    data = SHARED / "data"
    if not data.is_dir():
        pytest.skip(f"real data not found at {data}")
    return data


@pytest.fixture(scope="session")
def e5_backbone() -> Path:
    """multilingual-e5-small as a local XLM-R folder, built once by ../shared's script and cached."""
    if not E5_BUILDER.is_file():
        pytest.skip(f"backbone builder not found at {E5_BUILDER}")
    if not (E5_CACHE / "stepstone-e5-small.ok").is_file():
        done = subprocess.run([sys.executable, str(E5_BUILDER), str(E5_CACHE)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.fail(f"building multilingual-e5-small failed: {done.stderr[-2000:]}")
    return E5_CACHE
