"""Live training logs beyond the run's own train_log.jsonl: TensorBoard, when asked for."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from .errors import StepstoneError

Sink = Callable[[dict], None]


def check_tensorboard() -> None:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise StepstoneError("--log tensorboard needs the tensorboard package (pip install tensorboard)") from None


@contextmanager
def tensorboard(directory: Path) -> Iterator[Sink]:
    """A sink writing step loss / learning rate and dev metrics as TensorBoard scalars under `directory`."""
    check_tensorboard()
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(directory))

    def sink(record: dict) -> None:
        if record["kind"] == "step":
            writer.add_scalar("train/loss", record["loss"], record["step"])
            writer.add_scalar("train/lr", record["lr"], record["step"])
        else:
            for task, metrics in record["dev"].items():
                for name, value in metrics.items():
                    writer.add_scalar(f"dev/{task}/{name}", value, record["step"])

    try:
        yield sink
    finally:
        writer.close()
