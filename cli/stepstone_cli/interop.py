"""`stepstone export NAME --format peft --out DIR` and `stepstone import DIR --format peft --name NAME`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import console, user_errors

ZooOption = typer.Option(None, "--zoo", help="Zoo folder (default: $STEPSTONE_ZOO or ./adapters_zoo).")
FormatOption = typer.Option("peft", "--format", help="Adapter format: peft (Hugging Face PEFT LoRA).")


def export(
    name: str = typer.Argument(..., help="Zoo entry name (a LoRA adapter)."),
    out: Path = typer.Option(..., "--out", help="Folder to create; it must not exist."),
    fmt: str = FormatOption,
    zoo_dir: Optional[Path] = ZooOption,
) -> None:
    """Write a LoRA zoo entry as a PEFT adapter folder (adapter_config.json + adapter_model.safetensors).

    peft.PeftModel.from_pretrained(AutoModel of the backbone, DIR) loads the encoder LoRA; the task head(s)
    (stepstone_heads/TASK/, AdapterHub layout) and the manifest travel next to it, unread by PEFT."""
    from stepstone.interop import MODULE_OF, export_adapter
    from stepstone.zoo import Zoo

    with user_errors():
        result = export_adapter(name, out, fmt, zoo=Zoo(zoo_dir))
    modules = ", ".join(MODULE_OF[t] for t in result.lora.target_modules)
    console.print(f"LoRA r={result.lora.r} alpha={result.lora.alpha}, {result.tensors} tensors: {modules}",
                  highlight=False)
    console.print(f"heads (not loaded by PEFT): {', '.join(result.heads) or 'none'}", highlight=False)
    console.print(f"exported {result.entry}: {result.path}", highlight=False)


def import_(
    path: Path = typer.Argument(..., help="PEFT LoRA folder: adapter_config.json + adapter_model.safetensors."),
    name: str = typer.Option(..., "--name", help="Name of the new zoo entry."),
    fmt: str = FormatOption,
    backbone: Optional[str] = typer.Option(None, help="Backbone it adapts (default: the folder's stepstone manifest, "
                                                      "else PEFT's base_model_name_or_path)."),
    zoo_dir: Optional[Path] = ZooOption,
) -> None:
    """Bring a PEFT LoRA adapter folder into the zoo as a LoRA entry.

    The entry composes like a trained one (--on "Stack(NAME)"); a folder exported by stepstone brings its
    task head(s) back too. Only safetensors weights are read, never adapter_model.bin (a pickle)."""
    from stepstone.interop import MODULE_OF, import_adapter
    from stepstone.zoo import Zoo

    with user_errors():
        result = import_adapter(path, name, fmt, zoo=Zoo(zoo_dir), backbone=backbone)
    modules = ", ".join(MODULE_OF[t] for t in result.lora.target_modules)
    console.print(f"LoRA r={result.lora.r} alpha={result.lora.alpha}, {result.tensors} tensors: {modules}",
                  highlight=False)
    heads = ", ".join(result.heads) or f'none (compose it: --on "Stack({name})")'
    console.print(f"heads: {heads}", highlight=False)
    console.print(f"saved adapter: {result.entry.path}", highlight=False)
