"""Where a task's examples come from: local files in their native format (`--data-dir`, laid out as in
../shared/data, or as the upstream downloads unpack) or the Hugging Face hub (`datasets.load_dataset`, on a
machine that reaches it).

A `Sources` value holds both; `load` uses the local layout when a data dir is given, else the hub.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ..data.readers import Unlabelled
from ..errors import StepstoneError
from .base import Split

Reader = Callable[..., list[dict]]  # one Path per file of its candidate
Converter = Callable[[Any, str], list[dict]]  # (hub datasets.Dataset, language) -> canonical examples

# ISO 639-1 -> the 3-letter codes Tatoeba (LASER) file names use.
ISO3 = {"ar": "ara", "zh": "cmn", "de": "deu", "fr": "fra", "hi": "hin", "ru": "rus", "es": "spa", "it": "ita",
        "ja": "jpn", "ko": "kor", "nl": "nld", "pt": "por", "tr": "tur", "vi": "vie", "id": "ind", "fi": "fin",
        "he": "heb", "hu": "hun", "et": "est", "el": "ell", "bg": "bul", "fa": "pes", "th": "tha", "ur": "urd",
        "bn": "ben", "ta": "tam", "te": "tel", "ml": "mal", "mr": "mar", "af": "afr", "eu": "eus", "jv": "jav",
        "ka": "kat", "kk": "kaz", "sw": "swh", "tl": "tgl",
        # XTREME-R's extra Tatoeba languages (google-research/xtreme utils_preprocess.py, lang3_dict)
        "az": "aze", "lt": "lit", "pl": "pol", "uk": "ukr", "ro": "ron"}
LABELS = "labels/"  # XTREME's --label_folder layout under the data dir: labels/TASK/test-LANG.EXT


@dataclass(frozen=True)
class Together:
    """Files one reader reads together: XTREME's test inputs, whose labels it removed, and their labels file
    (`labels/TASK/test-LANG.EXT`, as XTREME's own evaluate.py --label_folder has them); `read(*paths)`."""

    patterns: tuple[str, ...]
    read: Reader


def xtreme_test(inputs: str, task: str, read_plain: Reader, read_paired: Reader) -> list:
    """An XTREME test file's candidates: the file with its labels from XTREME's label folder
    (`labels/TASK/test-{lang}.tsv`; XTREME's preprocessing removes them from the test file), else the file
    as it is (labelled, e.g. from the original dataset)."""
    return [Together((inputs, f"{LABELS}{task}/test-{{lang}}.tsv"), read_paired), (inputs, read_plain)]


@dataclass(frozen=True)
class Local:
    """Per split, candidates in order: a file pattern (relative to the data dir; `{lang}`, `{lang3}`, `{name}`
    filled in) with its reader, or `Together` files; the first candidate whose files all exist wins.
    `names`: language -> the name upstream file names use (TyDiQA's `tydiqa-goldp-dev-arabic.json`)."""

    files: dict[Split, Sequence[tuple[str, Reader] | Together]]
    names: dict[str, str] = field(default_factory=dict)

    def candidates(self, split: Split, lang: str) -> list[tuple[tuple[str, ...], Reader]]:
        # MLQA-style languages "ctx.question" fill {ctx} and {qst}; plain ones fill both with the language.
        ctx, _, qst = lang.partition(".")
        codes = dict(lang=lang, lang3=ISO3.get(lang, lang), ctx=ctx, qst=qst or ctx, name=self.names.get(lang, lang))
        found = []
        for candidate in self.files.get(split, ()):
            patterns, read = (candidate.patterns, candidate.read) if isinstance(candidate, Together) else (
                (candidate[0],), candidate[1])
            found.append((tuple(p.format(**codes) for p in patterns), read))
        return found

    def paths(self, split: Split, lang: str) -> list[tuple[str, Reader]]:
        """The first file of each candidate (the one whose presence says the language has data)."""
        return [(files[0], read) for files, read in self.candidates(split, lang)]

    def looked_for(self, split: Split, lang: str) -> str:
        files = dict.fromkeys(f for fs, _ in self.candidates(split, lang) for f in fs)  # unique, in order
        return ", ".join(files) or "no file is defined for this split"


@dataclass(frozen=True)
class Hub:
    """A hub dataset: `path`, a config name pattern (`{lang}` filled in), split names, and a converter
    from the hub's rows to stepstone's canonical examples."""

    path: str
    config: str | None
    splits: dict[Split, str]
    convert: Converter
    langs: dict[str, str] = field(default_factory=dict)  # stepstone language -> the dataset's code


@dataclass(frozen=True)
class Sources:
    local: Local | None = None
    hub: Hub | None = None

    def load(self, split: Split, lang: str, data_dir: Path | None) -> list[dict]:
        if data_dir is not None:
            return self._local(split, lang, Path(data_dir))
        if self.hub is None:
            raise StepstoneError("this task has no hub source: pass --data-dir with its files "
                                 f"({self.describe()})")
        return self._hub(split, lang)

    def describe(self) -> str:
        parts = []
        if self.hub is not None:
            parts.append(f"hub {self.hub.path}" + (f" ({self.hub.config})" if self.hub.config else ""))
        if self.local is not None:
            patterns = [p for candidates in self.local.files.values() for c in candidates
                        for p in (c.patterns if isinstance(c, Together) else (c[0],))]
            first = next(p for p in patterns if not p.startswith(LABELS))  # the task's folder, not XTREME's labels
            parts.append(f"local {first.rsplit('/', 1)[0]}/")
        return "; ".join(parts) or "none"

    def has_local(self, split: Split, lang: str, data_dir: Path) -> bool:
        """Whether `data_dir` holds a file for this split and language (the first file of a candidate)."""
        return self.local is not None and any((Path(data_dir) / files[0]).is_file()
                                              for files, _ in self.local.candidates(split, lang))

    def _local(self, split: Split, lang: str, data_dir: Path) -> list[dict]:
        if self.local is None:
            raise StepstoneError(f"no local file layout for this task; it loads from the hub ({self.describe()})")
        candidates = self.local.candidates(split, lang)
        for files, reader in candidates:
            paths = [data_dir / f for f in files]
            if all(path.is_file() for path in paths):
                try:
                    examples = reader(*paths)
                except Unlabelled as err:  # no labels at all: say what to do about it
                    raise StepstoneError(f"{err}{self._unlabelled_advice(split, candidates, data_dir, files)}") from None
                if not examples:  # e.g. a TSV with only its header line, SQuAD with an empty 'data' list
                    raise StepstoneError(f"{paths[0]}: no examples in the file")
                return examples
        for files, _ in candidates:  # XTREME's test inputs without the labels that go with them: not "no data"
            if len(files) > 1 and (data_dir / files[0]).is_file():
                missing = ", ".join(str(data_dir / f) for f in files[1:] if not (data_dir / f).is_file())
                raise StepstoneError(f"{data_dir / files[0]}: found, but not {missing} that goes with it "
                                     f"(XTREME ships its test labels separately)")
        raise StepstoneError(self.missing(split, lang, data_dir))

    def missing(self, split: Split, lang: str, data_dir: Path) -> str | None:
        """Why `data_dir` has no data for this split and language (evaluation skips such a language), or None
        when a candidate's first file is there (reading it may still fail) or the task has no local layout."""
        if self.local is None or self.has_local(split, lang, data_dir):
            return None
        return (f"no {split.value} file for language '{lang}' under {data_dir} "
                f"(looked for: {self.local.looked_for(split, lang)})")

    @staticmethod
    def _unlabelled_advice(split: Split, candidates: list[tuple[tuple[str, ...], Reader]], data_dir: Path,
                           read: tuple[str, ...]) -> str:
        if split is Split.VALIDATION:
            return "; to train without a dev set, pass train.dev=false train.select_best=false"
        labels = next((f for files, _ in candidates for f in files if f.startswith(LABELS)), None)
        if labels is not None and labels not in read:  # XTREME's test files: their labels come separately
            return f"; XTREME keeps test labels in separate files: put this one's at {data_dir / labels}"
        return ""

    def _hub(self, split: Split, lang: str) -> list[dict]:
        hub = self.hub
        if split not in hub.splits:
            raise StepstoneError(f"{hub.path} has no {split.value} split on the hub "
                                 f"(valid: {', '.join(s.value for s in hub.splits)})")
        code = hub.langs.get(lang, lang)
        config = hub.config.format(lang=code, lang3=ISO3.get(lang, lang)) if hub.config else None
        try:
            import datasets

            rows = datasets.load_dataset(hub.path, config, split=hub.splits[split])
        except Exception as err:  # the hub raises many types: network, missing config, auth
            reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
            raise StepstoneError(f"cannot load {hub.path} ({config or 'default'}, {hub.splits[split]}) from the hub: "
                                 f"{reason}; use --data-dir for local files") from None
        from ..provenance import read_hub

        read_hub(hub.path, config, hub.splits[split])  # manifests record what each run read
        return hub.convert(rows, lang)


@dataclass(frozen=True)
class Union:
    """Other registered tasks' splits concatenated, e.g. ANLI+ = ANLI + MNLI + SNLI for training
    (jiant's "full ANLI"). Each part loads from its own source (hub or `--data-dir`)."""

    parts: dict[Split, tuple[str, ...]]

    def load(self, split: Split, lang: str, data_dir: Path | None) -> list[dict]:
        from . import get_task

        if split not in self.parts:
            raise StepstoneError(f"no {split.value} split (valid: {', '.join(s.value for s in self.parts)})")
        return [e for name in self.parts[split] for e in get_task(name).source.load(split, lang, data_dir)]

    def describe(self) -> str:
        return "; ".join(f"{s.value}: {' + '.join(names)}" for s, names in self.parts.items())
