"""The adapters-library glue that is the same for every method: model building, strict loading, heads,
fusion, activation, parameter ownership, dropout, quantised LoRA wrapping.

Per-method knowledge (settings, adapters-library config, shape checks) lives in the method's own module
(bottleneck.py, lora.py, ...) and is reached through the `METHODS` registry; composition rules live in
`stepstone.composition`.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from .base import METHODS, check_layers

if TYPE_CHECKING:
    from ..specs import MethodSpec

FUSION_OWNER = "adapter_fusion_layer"
LORA_FUSION_OWNER = "lora_fusion"  # the gates of Fuse over LoRA members (stepstone.lora_fusion)


def quiet_libraries() -> None:
    """Silence the libraries' known noise; called before a model is built or loaded (not at import,
    so importing stepstone changes no global logging or warnings state). Idempotent: setting a level
    twice is the same, and `warnings.filterwarnings` replaces an identical filter instead of adding one."""
    import logging
    import warnings

    # adapters logs "There are adapters available but none are activated" on every forward pass with
    # nothing active (e.g. a full fine-tune model that has no adapters yet): noise, not a problem.
    logging.getLogger("adapters").setLevel(logging.ERROR)
    # bitsandbytes (imported by adapters) warns on AVX512-BF16 CPUs that an optional CPU 4-bit kernel
    # package is missing; stepstone does not use it, so the warning only confuses.
    logging.getLogger("bitsandbytes.backends.cpu").setLevel(logging.ERROR)
    # LLM.int8() says on every forward that fp32 inputs are cast to fp16 for its matmul: that is how it works.
    warnings.filterwarnings("ignore", message="MatMul8bitLt: inputs will be cast")


def adapter_config(method: MethodSpec) -> Any:
    """The adapters-library config of an adapter method's settings."""
    record = METHODS.get(method.kind)
    quiet_libraries()  # the method's config class imports adapters (the first import of it when checking a zoo)
    if record.adapter_config is None:
        raise ValueError(f"method '{method.kind}' has no adapter config")
    return record.adapter_config(method.options)


def check_fits(method: MethodSpec, config: Any) -> None:
    """Refuse settings the backbone's shape turns into something else (each method's own check; a
    `leave_out` against the backbone's layer count)."""
    METHODS.get(method.kind).check_fits(method.options, config.hidden_size)
    leave_out = getattr(method.options, "leave_out", None)
    if leave_out is not None:
        check_layers(method.kind, leave_out, config.num_hidden_layers)


def adapter_owners() -> tuple[str, ...]:
    """The parameter containers of every registered adapter method ('adapters', 'loras', ...)."""
    return tuple(dict.fromkeys(owner for _, m in METHODS.items() for owner in m.owners))


def model_from_config(config: Any, **kwargs: Any) -> Any:
    """A randomly initialised adapter model (flexible heads) for a transformers config."""
    quiet_libraries()  # before the import: importing adapters imports bitsandbytes, which logs at import
    from adapters import AutoAdapterModel

    return AutoAdapterModel.from_config(config, **kwargs)


def model_from_pretrained(name_or_path: str, **kwargs: Any) -> Any:
    quiet_libraries()
    from adapters import AutoAdapterModel

    return AutoAdapterModel.from_pretrained(name_or_path, **kwargs)


def add_adapter(model: Any, name: str, method: MethodSpec) -> None:
    model.add_adapter(name, config=adapter_config(method))


def save_adapter(model: Any, directory: Path, name: str, with_head: bool) -> None:
    """AdapterHub layout (adapter_config.json + adapter.safetensors [+ head files]); never pickle."""
    model.save_adapter(str(directory), name, with_head=with_head, use_safetensors=True)


def load_adapter(model: Any, directory: Path, name: str, with_head: bool) -> None:
    """Load the adapter (and its head) saved in `directory` as `name`, strictly (see `_load_strictly`)."""
    from ..integrity import ADAPTER_CONFIG, ADAPTER_WEIGHTS, HEAD_CONFIG, HEAD_WEIGHTS, read_config

    directory = Path(directory)
    files = [(directory / ADAPTER_WEIGHTS, read_config(directory / ADAPTER_CONFIG).get("name"), name,
              {(owner, name) for owner in adapter_owners()})]
    if with_head:
        files.append((directory / HEAD_WEIGHTS, read_config(directory / HEAD_CONFIG).get("name"), name,
                      {("heads", name)}))
    _load_strictly(model, files, lambda: model.load_adapter(str(directory), load_as=name, with_head=with_head,
                                                            use_safetensors=True, set_active=False))


def remove_adapter(model: Any, name: str) -> None:
    """Deactivate and delete adapter `name` (rank loads one candidate after another into one backbone)."""
    model.set_active_adapters(None)
    model.delete_adapter(name)


def load_head(model: Any, directory: Path, name: str) -> None:
    """Load the head saved in `directory` as `name`, strictly."""
    from ..integrity import HEAD_CONFIG, HEAD_WEIGHTS, read_config

    directory = Path(directory)
    files = [(directory / HEAD_WEIGHTS, read_config(directory / HEAD_CONFIG).get("name"), name, {("heads", name)})]
    _load_strictly(model, files, lambda: model.load_head(str(directory), load_as=name, use_safetensors=True))


def _load_strictly(model: Any, files: list[tuple[Path, str, str, set]], load: Any) -> None:
    """Run an adapters-library `load`, then require the model's tensors of each file's owners to be exactly
    the file's (names and shapes). files: (weights file, the name it was saved under, the name it loads
    as, the (kind, owner) pairs whose tensors it holds). The library only logs missing and unexpected
    keys (a renamed tensor would stay at its initial value) and raises a multi-line RuntimeError on a
    shape mismatch, after the modules were added: both become one line naming the file and tensor."""
    from ..integrity import compare_tensors, renamed, tensor_shapes

    found = [renamed(_own(tensor_shapes(file), saved), saved, name) for file, saved, name, _ in files]  # headers first
    failure = None
    try:
        load()
    except RuntimeError as err:
        if not str(err).startswith("Error(s) in loading state_dict"):
            raise
        failure = err
    state = model.state_dict()
    for (file, saved, name, owners), shapes in zip(files, found):
        expected = {k: tuple(v.shape) for k, v in state.items() if adapter_kind_of_parameter(k) in owners}
        # named as in the file
        compare_tensors(file, renamed(shapes, name, saved), renamed(expected, name, saved))
    if failure is not None:
        raise failure


def _own(shapes: dict, saved: str) -> dict:
    """Drop the tensors of other heads from a head file. The adapters library saves head NAME with a
    substring filter ('heads.NAME' in key), so the head file of 'mt' also holds the heads 'mt_TASK' (stepstone's
    further multi-task heads), which load from their own folders."""
    def other_head(key: str) -> bool:
        owner = adapter_kind_of_parameter(key)
        return owner is not None and owner[0] == "heads" and owner[1] != saved and owner[1].startswith(saved)

    return {k: v for k, v in shapes.items() if not other_head(k)}


def fusion_name(members: tuple[str, ...]) -> str:
    return ",".join(members)


def add_fusion(model: Any, members: tuple[str, ...]) -> None:
    from adapters.composition import Fuse

    model.add_adapter_fusion(Fuse(*members))


def save_fusion(model: Any, directory: Path, members: tuple[str, ...]) -> None:
    model.save_adapter_fusion(str(directory), fusion_name(members), use_safetensors=True)


def load_fusion(model: Any, directory: Path, members: tuple[str, ...]) -> None:
    """Load the Fuse layer of `members` saved in `directory`, strictly."""
    from ..integrity import FUSION_WEIGHTS

    name = fusion_name(members)
    # load_adapter_fusion returns None on head models: callers keep the member names themselves.
    _load_strictly(model, [(Path(directory) / FUSION_WEIGHTS, name, name, {(FUSION_OWNER, name)})],
                   lambda: model.load_adapter_fusion(str(directory), set_active=False, use_safetensors=True))


def activate(model: Any, setup: Any, head: str | None) -> None:
    """Make `setup` (an adapters composition block, an adapter name, or None) and `head` active."""
    if setup is None:
        model.set_active_adapters(None)
    else:
        model.set_active_adapters(setup)
    model.active_head = head


def fusion_regularization(model: Any) -> Any:
    """The AdapterFusion value-matrix regulariser; only AdapterTrainer adds it, so our loop must."""
    return model.base_model.get_fusion_regularization_loss()


def adapter_kind_of_parameter(name: str) -> tuple[str, str] | None:
    """(container, owner) for an adapter/head parameter name: container is a method's owner ('adapters',
    'loras', ...), 'adapter_fusion_layer', 'lora_fusion' or 'heads'.

    Parameter names hold the owner as a path segment right after its container, e.g.
    `roberta.encoder.layer.0.output.adapters.NAME.adapter_up.weight`, `...query.loras.NAME.lora_A`,
    `...output.adapter_fusion_layer.A,B.query.weight`, `heads.NAME.1.weight`.
    """
    parts = name.split(".")
    containers = (*adapter_owners(), FUSION_OWNER, LORA_FUSION_OWNER)
    if parts[0] == "heads" and len(parts) > 1:
        return "heads", parts[1]
    for i, part in enumerate(parts[:-1]):
        if part in containers:
            return part, parts[i + 1]
    return None


@contextmanager
def backbone_dropout_off(model: Any) -> Iterator[int]:
    """Switch off the backbone's dropout inside the block (its nn.Dropout layers and the dropout
    probability SDPA attention passes to the kernel); adapters', fusion layers' and heads' dropout stay.
    Restored on exit. Yields how many layers were switched off."""
    import torch

    changed: list[tuple[Any, str, float]] = []
    for name, module in model.named_modules():
        if adapter_kind_of_parameter(f"{name}.-") is not None:
            continue
        attribute = "p" if isinstance(module, torch.nn.Dropout) else "dropout_prob" if hasattr(module, "dropout_prob") \
            else None  # dropout_prob: the probability SDPA attention hands to the kernel
        if attribute is not None and getattr(module, attribute) > 0:
            changed.append((module, attribute, getattr(module, attribute)))
            setattr(module, attribute, 0.0)
    try:
        yield len(changed)
    finally:
        for module, attribute, value in changed:
            setattr(module, attribute, value)


def wrap_quantized_for_lora(model: Any) -> int:
    """Give a bitsandbytes-quantised backbone its LoRA wrappers back; returns how many layers were wrapped.

    The adapters library wraps every LoRA-capable linear layer when the model is built, but a quantised
    `from_pretrained` then swaps those layers for bitsandbytes ones, wrappers and all. Re-wrapping the
    swapped layers (the library's own `LoRALinear.wrap`, which has 4-bit and 8-bit variants) is what
    `adapters.init` would do on an already-quantised model (the adapters docs' QLoRA recipe)."""
    from adapters.methods.lora import LoRALayer, LoRALinear

    base, wrapped = model.base_model, 0
    spots = [("attention.self.query", "selfattn", "q"), ("attention.self.key", "selfattn", "k"),
             ("attention.self.value", "selfattn", "v"), ("intermediate.dense", "intermediate", None),
             ("output.dense", "output", None)]
    for layer in base.encoder.layer:
        for path, location, attn_key in spots:
            parent_path, _, leaf = path.rpartition(".")
            parent = layer.get_submodule(parent_path)
            module = getattr(parent, leaf)
            if isinstance(module, LoRALayer):
                continue
            setattr(parent, leaf, LoRALinear.wrap(module, location, base.config, base.adapters_config,
                                                  attn_key=attn_key))
            wrapped += 1
    return wrapped
