"""Where a task's examples come from: local files in their native format (`--data-dir`, laid out as in
../shared/data) or the Hugging Face hub (`datasets.load_dataset`, on a machine that reaches it).

A `Sources` value holds both; `load` uses the local layout when a data dir is given, else the hub.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import StepstoneError
from .base import Split

Reader = Callable[[Path], list[dict]]
Converter = Callable[[Any, str], list[dict]]  # (hub datasets.Dataset, language) -> canonical examples

# ISO 639-1 -> the 3-letter codes Tatoeba (LASER) file names use.
ISO3 = {"ar": "ara", "zh": "cmn", "de": "deu", "fr": "fra", "hi": "hin", "ru": "rus", "es": "spa", "it": "ita",
        "ja": "jpn", "ko": "kor", "nl": "nld", "pt": "por", "tr": "tur", "vi": "vie", "id": "ind", "fi": "fin",
        "he": "heb", "hu": "hun", "et": "est", "el": "ell", "bg": "bul", "fa": "pes", "th": "tha", "ur": "urd",
        "bn": "ben", "ta": "tam", "te": "tel", "ml": "mal", "mr": "mar", "af": "afr", "eu": "eus", "jv": "jav",
        "ka": "kat", "kk": "kaz", "sw": "swh", "tl": "tgl"}


@dataclass(frozen=True)
class Local:
    """Per split, candidate file patterns (relative to the data dir; `{lang}`, `{lang3}` filled in) with
    the reader for each; the first existing file wins."""

    files: dict[Split, Sequence[tuple[str, Reader]]]

    def paths(self, split: Split, lang: str) -> list[tuple[str, Reader]]:
        # MLQA-style languages "ctx.question" fill {ctx} and {qst}; plain ones fill both with the language.
        ctx, _, qst = lang.partition(".")
        codes = dict(lang=lang, lang3=ISO3.get(lang, lang), ctx=ctx, qst=qst or ctx)
        return [(p.format(**codes), r) for p, r in self.files.get(split, ())]


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
            first = next(iter(self.local.files.values()))[0][0]
            parts.append(f"local {first.rsplit('/', 1)[0]}/")
        return "; ".join(parts) or "none"

    def _local(self, split: Split, lang: str, data_dir: Path) -> list[dict]:
        if self.local is None:
            raise StepstoneError(f"no local file layout for this task; it loads from the hub ({self.describe()})")
        candidates = self.local.paths(split, lang)
        for relative, reader in candidates:
            if (data_dir / relative).is_file():
                examples = reader(data_dir / relative)
                if not examples:  # e.g. a TSV with only its header line, SQuAD with an empty 'data' list
                    raise StepstoneError(f"{data_dir / relative}: no examples in the file")
                return examples
        looked = ", ".join(r for r, _ in candidates) or "no file is defined for this split"
        raise StepstoneError(f"no {split.value} file for language '{lang}' under {data_dir} (looked for: {looked})")

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
