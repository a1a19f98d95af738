"""Argument groups as dataclasses, parsed from argument files and the command line.

An argument file holds one `key = value` per line (`#` starts a comment); the command line
is appended after it, so anything given there overrides the file. Every check that can be
made before work starts is made here, with a message that names the bad value.
"""
from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path


def _str2bool(text: str) -> bool:
    lowered = str(text).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def read_argument_file(path: str | Path) -> list[str]:
    """`key = value` lines -> ["--key", "value", ...]; a list value is split on whitespace."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"argument file {path} does not exist")
    argv: list[str] = []
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if "=" not in line:
            raise ValueError(f"{path}:{number}: expected 'key = value', got {raw.strip()!r}")
        key, value = (part.strip() for part in line.split("=", 1))
        argv.append("--" + key)
        argv.extend(value.split())
    return argv


@dataclass
class ModelArguments:
    config_name: str = field(default="", metadata={"help": "model config JSON (configs/*.json)"})
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "start from the weights of this HF model directory"})
    tokenizer_path: str | None = field(
        default=None,
        metadata={"help": "BERT vocab.txt, a folder with GPT-2 encoder.json + vocab.bpe, a "
                          "tokenizer.json or a HF tokenizer folder; unset = train one on the corpus"})

    def __post_init__(self):
        if not self.config_name and not self.model_name_or_path:
            raise ValueError("--config_name is required (a model config JSON such as "
                             "configs/bert-6L-512H.json)")


@dataclass
class DataArguments:
    train_files: list[str] | None = field(
        default=None, metadata={"help": "text files or folders of them; unset = the embedded "
                                        "default corpus (BBC News articles)"})
    dataset_name: str | None = field(
        default=None, metadata={"help": "a HF `datasets` name (needs network and `datasets`)"})
    dataset_config_name: str | None = None
    text_column: str = "text"
    documents: str = field(
        default="blank_line", metadata={"help": "document boundaries: blank_line, line or file"})
    block_size: int = 128
    validation_split_percentage: float = 2.0
    mlm_probability: float = 0.15
    whole_word_mask: bool = False
    cache_dir: str | None = field(
        default=None, metadata={"help": "where tokenised corpora are cached; unset = next to "
                                        "the data if writable, else ~/.cache/ligo"})

    def __post_init__(self):
        if self.documents not in ("blank_line", "line", "file"):
            raise ValueError(f"--documents must be blank_line, line or file, not {self.documents!r}")
        if self.block_size < 8:
            raise ValueError(f"--block_size {self.block_size} is too small (at least 8)")
        if not 0 < self.validation_split_percentage < 50:
            raise ValueError("--validation_split_percentage must be in (0, 50), not "
                             f"{self.validation_split_percentage}")
        if not 0 < self.mlm_probability < 1:
            raise ValueError(f"--mlm_probability must be in (0, 1), not {self.mlm_probability}")


@dataclass
class TrainingArguments:
    output_dir: str = ""
    overwrite_output_dir: bool = False
    should_continue: bool = field(
        default=False, metadata={"help": "resume from the latest valid checkpoint in output_dir"})
    seed: int = 42
    per_device_train_batch_size: int = 32
    per_device_eval_batch_size: int = 64
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1e-4
    weight_decay: float = 0.01
    adam_beta1: float = 0.9
    adam_beta2: float = 0.98
    adam_epsilon: float = 1e-6
    max_grad_norm: float = 1.0
    max_steps: int = 1000
    lr_scheduler_type: str = field(
        default="linear", metadata={"help": "linear, cosine, poly or constant (all with warmup)"})
    warmup_steps: int = 0
    warmup_ratio: float = 0.0
    lr_end: float = 0.0
    poly_power: float = 1.0
    bf16: bool = False
    fp16: bool = False
    logging_steps: int = 10
    eval_steps: int = 200
    eval_max_batches: int = 50
    ckpt_steps: int = 500
    save_total_limit: int = 2
    stop_after_steps: int | None = field(
        default=None, metadata={"help": "checkpoint and exit after this many optimizer steps in "
                                        "this process (for preemptible jobs); resume with "
                                        "--should_continue"})
    num_threads: int | None = None
    disable_tqdm: bool = False

    def __post_init__(self):
        if not self.output_dir:
            raise ValueError("--output_dir is required")
        if self.bf16 and self.fp16:
            raise ValueError("choose one of --bf16 and --fp16, not both")
        if self.lr_scheduler_type not in ("linear", "cosine", "poly", "constant"):
            raise ValueError("--lr_scheduler_type must be linear, cosine, poly or constant, not "
                             f"{self.lr_scheduler_type!r}")
        for name in ("max_steps", "per_device_train_batch_size", "per_device_eval_batch_size",
                     "gradient_accumulation_steps", "logging_steps", "eval_steps", "ckpt_steps",
                     "save_total_limit"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be at least 1, not {getattr(self, name)}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"--warmup_ratio must be in [0, 1), not {self.warmup_ratio}")
        if self.warmup_steps < 0:
            raise ValueError(f"--warmup_steps must be >= 0, not {self.warmup_steps}")

    @property
    def num_warmup_steps(self) -> int:
        return self.warmup_steps or int(round(self.warmup_ratio * self.max_steps))


@dataclass
class GrowthArguments:
    """Start from a grown small model (ligo.operators): which source, which operators."""

    source_model_path: str | None = field(
        default=None, metadata={"help": "small model folder (HF format, e.g. a finished run's "
                                        "output_dir) to grow into --config_name"})
    grow_scheme: str = field(default="stack", metadata={
        "help": "depth operator: stack, interpolate, insert or identity (or a width operator: "
                "then that width, with stacking)"})
    width_scheme: str | None = field(default=None, metadata={
        "help": "width operator: net2net, bert2bert_fpi, bert2bert_aki, double, zero or random"})
    insert_positions: list[int] | None = field(default=None, metadata={
        "help": "target indices of new layers for insert/identity (default: on top)"})
    insert_init: str = field(default="copy", metadata={"help": "insert: copy, random or copy_noise"})
    insert_noise_std: float = 0.01
    width_noise_std: float = field(default=0.0, metadata={"help": "net2net: noise on the copies"})
    growth_seed: int = 0
    reset_optimizer: bool = field(default=False, metadata={
        "help": "start AdamW from zero instead of mapping the source checkpoint's moments"})

    def operator_options(self) -> dict:
        """grow() keyword arguments. `--grow_scheme` may also name a width operator
        (`--grow_scheme bert2bert_aki`): that width, with stacking for any new layers."""
        from ligo.operators.width import WIDTH_OPERATORS

        depth, width = self.grow_scheme, self.width_scheme
        if depth in WIDTH_OPERATORS:
            if width is not None and width != depth:
                raise ValueError(f"--grow_scheme {depth} is a width operator but --width_scheme "
                                 f"says {width}; give one of them")
            depth, width = "stack", depth
        return {"depth": depth, "width": width, "seed": self.growth_seed,
                "depth_options": {"positions": self.insert_positions, "init": self.insert_init,
                                  "noise_std": self.insert_noise_std},
                "width_options": {"noise_std": self.width_noise_std}}


def _add_dataclass_arguments(parser: argparse.ArgumentParser, cls) -> None:
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group(cls.__name__)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        options: dict = {"default": f.default, "help": f.metadata.get("help")}
        args = typing.get_args(kind)
        list_kind = kind if typing.get_origin(kind) is list else next(
            (a for a in args if typing.get_origin(a) is list), None)
        if kind is bool:
            options.update(type=_str2bool, nargs="?", const=True)
        elif list_kind is not None:
            options.update(nargs="+", type=typing.get_args(list_kind)[0])
        else:
            base = next((a for a in args if a is not type(None)), kind) if args else kind
            options["type"] = base
        group.add_argument("--" + f.name, **options)


def parse_args(groups: tuple, argv: list[str] | None = None, description: str = ""):
    """Parse `--config FILE` (argument file) then the command line into the dataclasses."""
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", action="append", default=[])
    known, rest = pre.parse_known_args(argv)
    file_argv = [token for path in known.config for token in read_argument_file(path)]

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", action="append", default=[],
                        help="argument file with one 'key = value' per line; repeatable")
    for cls in groups:
        _add_dataclass_arguments(parser, cls)
    namespace = parser.parse_args(file_argv + rest)
    values = vars(namespace)
    return tuple(cls(**{f.name: values[f.name] for f in dataclasses.fields(cls)}) for cls in groups)
