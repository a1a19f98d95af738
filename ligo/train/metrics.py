"""Where numbers go: tensorboard scalars, a JSON-lines file and a concise log line.

Only the main process writes; other ranks get a logger with `enabled=False`. Besides the
usual step axis, losses are also written against tokens seen and GFLOPs spent
(`*_by_tokens/*`, `*_by_gflops/*`) and wall-clock seconds of training (`*_by_seconds/*`),
the axes on which growth methods are compared.
"""
from __future__ import annotations

import json
import time
from pathlib import Path


class MetricsLogger:
    def __init__(self, output_dir: str | Path, enabled: bool):
        self.enabled = enabled
        self.writer = None
        self.jsonl = None
        if enabled:
            from tensorboardX import SummaryWriter

            self.writer = SummaryWriter(str(Path(output_dir) / "tensorboard"))
            self.jsonl = open(Path(output_dir) / "metrics.jsonl", "a")

    def log(self, prefix: str, values: dict[str, float], step: int, tokens: int, flops: float,
            seconds: float | None = None) -> None:
        if not self.enabled:
            return
        for name, value in values.items():
            self.writer.add_scalar(f"{prefix}/{name}", value, step)
        if "loss" in values:
            self.writer.add_scalar(f"{prefix}_by_tokens/loss", values["loss"], tokens)
            self.writer.add_scalar(f"{prefix}_by_gflops/loss", values["loss"], int(flops / 1e9))
            if seconds is not None:
                self.writer.add_scalar(f"{prefix}_by_seconds/loss", values["loss"], int(seconds))
        record = {"split": prefix, "step": step, "tokens": tokens, "flops": flops,
                  "time": time.time(), **({} if seconds is None else {"train_seconds": seconds}),
                  **values}
        self.jsonl.write(json.dumps(record) + "\n")
        self.jsonl.flush()

    def drop_after(self, step: int) -> None:
        """Forget the metrics.jsonl rows past `step` (a resumed run repeats those steps), so
        the file holds each step once; at step 0 nothing is kept."""
        if not self.enabled:
            return
        from ligo.fileio import atomic_write_text

        path = Path(self.jsonl.name)
        self.jsonl.close()
        kept = [line for line in path.read_text().splitlines()
                if line.strip() and step > 0 and json.loads(line)["step"] <= step]
        atomic_write_text(path, "".join(line + "\n" for line in kept))
        self.jsonl = open(path, "a")

    def close(self) -> None:
        if self.enabled:
            self.writer.close()
            self.jsonl.close()


def format_line(step: int, max_steps: int, values: dict[str, float]) -> str:
    parts = [f"step {step}/{max_steps}"]
    formats = {"loss": "loss {:.4f}", "ppl": "ppl {:.2f}", "accuracy": "acc {:.3f}",
               "lr": "lr {:.2e}", "grad_norm": "grad {:.2f}", "tokens_per_s": "{:.0f} tok/s",
               "flops": "{:.3g} FLOPs", "seconds": "{:.0f}s"}
    parts += [fmt.format(values[key]) for key, fmt in formats.items() if key in values]
    if "below_unigram" in values:
        parts.append(f"{relative_to_unigram(values['below_unigram'])} unigram")
    return " | ".join(parts)


def relative_to_unigram(below: float) -> str:
    """'0.42 nats below' / '0.10 nats above' (the unigram line)."""
    return f"{abs(below):.2f} nats {'below' if below >= 0 else 'above'}"
