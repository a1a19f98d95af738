"""Argument groups as dataclasses, parsed from argument files and the command line.

An argument file holds one `key = value` per line (`#` starts a comment); the command line
is appended after it, so anything given there overrides the file. Every check that can be
made before work starts is made here, with a message that names the bad value.
"""
from __future__ import annotations

import argparse
import dataclasses
import re
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


def _str2bool_or_auto(text: str) -> bool | str:
    return "auto" if str(text).strip().lower() == "auto" else _str2bool(text)


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


@dataclass(frozen=True)
class Range:
    """A numeric flag's valid values: low/high bounds, each included unless *_open."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value) -> bool:
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return self.high is None or (value < self.high or (not self.high_open and value == self.high))

    def __str__(self) -> str:
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return (f"{'(' if self.low_open or self.low is None else '['}{low}, {high}"
                f"{')' if self.high_open or self.high is None else ']'}")


AT_LEAST_1 = Range(1)
POSITIVE = Range(0, low_open=True)
NON_NEGATIVE = Range(0)
FRACTION = Range(0, 1, high_open=True)
# every numeric flag of every argument group, checked in one place (check_ranges); --help
# shows each range. Bounds are what trains correctly: max_grad_norm 0 would zero every update,
# an mlm_probability below 1 % leaves eval blocks without a single label, and so on.
RANGES = {
    "block_size": Range(8), "validation_split_percentage": Range(0, 50, True, True),
    "mlm_probability": Range(0.01, 0.9),
    "per_device_train_batch_size": AT_LEAST_1, "per_device_eval_batch_size": AT_LEAST_1,
    "gradient_accumulation_steps": AT_LEAST_1, "learning_rate": Range(0, 1, low_open=True),
    "weight_decay": Range(0, 1), "adam_beta1": FRACTION, "adam_beta2": FRACTION,
    "adam_epsilon": Range(0, 1e-2, low_open=True), "max_grad_norm": POSITIVE,
    "max_steps": AT_LEAST_1, "warmup_steps": NON_NEGATIVE, "warmup_ratio": FRACTION,
    "lr_end": NON_NEGATIVE, "poly_power": POSITIVE, "logging_steps": AT_LEAST_1,
    "eval_steps": AT_LEAST_1, "eval_max_batches": AT_LEAST_1, "ckpt_steps": AT_LEAST_1,
    "save_total_limit": AT_LEAST_1, "stop_after_steps": AT_LEAST_1,
    "stop_at_eval_loss": POSITIVE, "num_threads": AT_LEAST_1, "tp_size": AT_LEAST_1,
    "dist_timeout_minutes": POSITIVE, "insert_noise_std": NON_NEGATIVE,
    "width_noise_std": NON_NEGATIVE, "width_split_noise": NON_NEGATIVE, "growth_seed": NON_NEGATIVE,
    "stage_ligo_steps": AT_LEAST_1, "msg_ramp_steps": AT_LEAST_1,
    "layer_drop": FRACTION, "layer_drop_ramp_steps": NON_NEGATIVE, "token_drop": FRACTION,
    "stage_ligo_learning_rate": Range(0, 1, low_open=True),
    "initial_num_layers": AT_LEAST_1, "restart_warmup_steps": NON_NEGATIVE,
    "slope_window": Range(0, 1, low_open=True), "slope_smoothing": FRACTION,
    "fuse_init_noise": NON_NEGATIVE, "tune_residual_noise": NON_NEGATIVE,
    "ligo_seed": NON_NEGATIVE, "seed": NON_NEGATIVE,
}


def check_range(flag: str, value, valid: Range) -> None:
    """`error: --flag value is out of range [a, b]` before any work."""
    if value is not None and value not in valid:
        raise ValueError(f"{flag} {value:g} is out of range: it must lie in {valid}")


def check_ranges(arguments) -> None:
    """Every field of an argument dataclass that RANGES names."""
    for f in dataclasses.fields(arguments):
        value = getattr(arguments, f.name)
        if f.name in RANGES and isinstance(value, (int, float)) and not isinstance(value, bool):
            check_range(f"--{f.name}", value, RANGES[f.name])


POSITION_INITS = ("random", "sinusoidal")
# LiGO's width matrices (ligo.operators.learned's WIDTH_FORMS and default, which a test keeps
# equal to these): here without torch, so the benchmark scripts' --table and --merge can name them
LIGO_WIDTH_FORMS = ("full", "structured")
LIGO_WIDTH_FORM = "full"


@dataclass
class ModelArguments:
    config_name: str = field(default="", metadata={"help": "model config JSON (configs/*.json)"})
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "start from the weights of this HF model directory"})
    tokenizer_path: str | None = field(
        default=None,
        metadata={"help": "BERT vocab.txt, a folder with GPT-2 encoder.json + vocab.bpe, a "
                          "tokenizer.json or a HF tokenizer folder; unset = train one on the corpus"})
    position_init: str = field(
        default="random",
        metadata={"help": "a from-scratch model's learned position table: random (the "
                          "family's N(0, initializer_range)) or sinusoidal (Vaswani et al.'s "
                          "sinusoids at that std, still trained; BERT leaves the masked-LM "
                          "plateau sooner with it, docs/benchmarks.md)"})

    def __post_init__(self):
        if not self.config_name and not self.model_name_or_path:
            raise ValueError("--config_name is required (a model config JSON such as "
                             "configs/bert-6L-512H.json)")
        if self.position_init not in POSITION_INITS:
            raise ValueError(f"--position_init must be one of {', '.join(POSITION_INITS)}, "
                             f"not {self.position_init!r}")


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
        check_ranges(self)
        if self.documents not in ("blank_line", "line", "file"):
            raise ValueError(f"--documents must be blank_line, line or file, not {self.documents!r}")


@dataclass
class TrainingArguments:
    output_dir: str = ""
    overwrite_output_dir: bool = False
    should_continue: bool = field(
        default=False, metadata={"help": "resume from the latest valid checkpoint in output_dir"})
    seed: int = 42
    per_device_train_batch_size: int = field(default=32, metadata={
        "deprecated_aliases": ["--per_gpu_train_batch_size"],
        "help": "sequences per process and micro-step (--per_gpu_train_batch_size: the original "
                "LiGO name, accepted)"})
    per_device_eval_batch_size: int = 64
    gradient_accumulation_steps: int = 1
    learning_rate: str = field(default="1e-4", metadata={
        "aliases": ["--lr"], "help": "peak learning rate, or auto: staged training's "
                                     "LR(N) = A - B log(N), N = non-embedding parameters "
                                     "(ligo.slope.auto_learning_rate)"})
    weight_decay: float = 0.01
    adam_beta1: float = 0.9
    adam_beta2: float = 0.98
    adam_epsilon: float = 1e-6
    max_grad_norm: float = 1.0
    max_steps: int = 1000
    lr_scheduler_type: str = field(
        default="linear", metadata={"help": "linear, cosine, poly or constant (all with warmup)"})
    warmup_steps: int | None = field(default=None, metadata={
        "help": "warmup steps; when given (0 included, in an argument file or on the command "
                "line) it wins over --warmup_ratio"})
    warmup_ratio: float | None = field(default=None, metadata={
        "help": "warmup as a fraction of max_steps (unset: 0 for pretraining, 0.1 for "
                "run_grow_distributed.py); --warmup_steps wins when given"})
    lr_end: float = 0.0
    poly_power: float = 1.0
    bf16: bool | str = field(default=False, metadata={
        "accepts_auto": True,
        "help": "bfloat16 autocast: true, false, or auto (true where the device runs bf16 "
                "natively, as the configs/*_wiki.txt recipes set). true is refused where it "
                "would run in a slow fallback (a CPU without AVX512/AMX: ~200x slower; "
                "ligo.precision)"})
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
    stop_at_eval_loss: float | None = field(
        default=None, metadata={"help": "end the run (final checkpoint, model, results) at the "
                                        "first evaluation whose loss is at or below this: train "
                                        "to a target loss; the LR schedule keeps --max_steps"})
    num_threads: int | None = None
    disable_tqdm: bool = False
    parallelism: str = field(default="ddp", metadata={
        "help": "ddp (every rank holds the model) or fsdp (FSDP2: parameters, gradients and "
                "AdamW state sharded over the ranks)"})
    compile: bool = field(default=False, metadata={
        "help": "torch.compile the transformer body (the first steps pay for the compilation; "
                "+8 %% measured on bert-6L-512H on 2 CPU cores by bench/profile_step.py)"})
    activation_checkpointing: bool = field(default=False, metadata={
        "help": "recompute each layer's activations in the backward pass (less memory)"})
    checkpoint_format: str = field(default="full", metadata={
        "help": "full: rank 0 gathers the whole model and AdamW state into one state.pt; "
                "sharded: every rank writes its own shards with torch.distributed.checkpoint "
                "(nothing gathered; for models beyond one host's memory). Either resumes with "
                "any world size and parallelism"})
    dist_timeout_minutes: float = field(default=30.0, metadata={
        "help": "under torchrun: how long the ranks wait for one that stopped answering before "
                "the run fails instead of hanging; it must cover rank 0's longest solo work "
                "(tokenising a new corpus, writing a full checkpoint)"})
    tp_size: int = field(default=1, metadata={
        "help": "tensor-parallel degree T: each layer's projections split over T consecutive "
                "ranks (attention heads must divide by T); the world size must divide by T, "
                "and with more than T processes use --parallelism fsdp over the rest"})
    layer_drop: float = field(default=0.0, metadata={
        "help": "progressive layer dropping (Zhang & He 2020): at every step layer i of L is "
                "skipped (not computed) with probability i/L x this rate, e.g. 0.5; "
                "ligo.train.drop"})
    layer_drop_ramp_steps: int = field(default=0, metadata={
        "help": "--layer_drop's schedule: the rate rises as P (1 - exp(-step / this)), PLD's "
                "time constant; 0: the full rate from the first step"})
    token_drop: float = field(default=0.0, metadata={
        "help": "token dropping (Hou et al. 2022): the middle layers skip this fraction of each "
                "sequence's positions, labelled (masked) tokens kept first, e.g. 0.5; "
                "ligo.train.drop"})

    def __post_init__(self):
        if not self.output_dir:
            raise ValueError("--output_dir is required")
        if str(self.learning_rate) != "auto":
            try:
                self.learning_rate = float(self.learning_rate)
            except ValueError:
                raise ValueError(f"--learning_rate must be a number or auto, not "
                                 f"{self.learning_rate!r}") from None
        check_ranges(self)
        if (self.lr_scheduler_type == "poly" and self.learning_rate != "auto"
                and self.lr_end >= self.learning_rate):
            raise ValueError(f"--lr_end {self.lr_end:g} must be below --learning_rate "
                             f"{self.learning_rate:g}: poly decays from the peak to lr_end")
        if self.bf16 is True and self.fp16:
            raise ValueError("choose one of --bf16 and --fp16, not both")
        if self.checkpoint_format not in ("full", "sharded"):
            raise ValueError(f"--checkpoint_format must be full or sharded, not "
                             f"{self.checkpoint_format!r}")
        if self.parallelism not in ("ddp", "fsdp"):
            raise ValueError(f"--parallelism must be ddp or fsdp, not {self.parallelism!r}")
        if self.lr_scheduler_type not in ("linear", "cosine", "poly", "constant"):
            raise ValueError("--lr_scheduler_type must be linear, cosine, poly or constant, not "
                             f"{self.lr_scheduler_type!r}")
        if self.warmup_steps is not None and self.warmup_steps > self.max_steps:
            # the LiGO repository warmed up over 10,000 steps inside a 100-step run
            raise ValueError(f"--warmup_steps {self.warmup_steps} is longer than the run "
                             f"(--max_steps {self.max_steps}); the learning rate would never "
                             "reach its peak")

    @property
    def num_warmup_steps(self) -> int:
        # `is None`, not `or`: an explicit --warmup_steps 0 (the LiGO recipe) means no warmup
        if self.warmup_steps is not None:
            return self.warmup_steps
        return int(round((self.warmup_ratio or 0.0) * self.max_steps))


@dataclass
class GrowthArguments:
    """Start from a grown small model (ligo.operators): which source, which operators."""

    source_model_path: str | None = field(
        default=None, metadata={"help": "small model folder (HF format, e.g. a finished run's "
                                        "output_dir) to grow into --config_name"})
    grow_scheme: str = field(default="stack", metadata={
        "help": "depth operator: stack, interpolate, insert, identity or msg (or a width "
                "operator: then that width, with stacking; msg: MSG's width and depth), or ligo "
                "(with --pretrained_ligo_path)"})
    pretrained_ligo_path: str | None = field(default=None, metadata={
        "help": "--grow_scheme ligo: the output_dir of run_grow_distributed.py"})
    width_scheme: str | None = field(default=None, metadata={
        "help": "width operator: net2net, bert2bert_fpi, bert2bert_aki, double, zero, random or "
                "msg (MSG: trained with masks that ramp from 0 to 1, see --msg_ramp_steps)"})
    msg_ramp_steps: int = field(default=100, metadata={
        "help": "MSG (--grow_scheme or --width_scheme msg): the masks of the new structures go "
                "from 0 (the source's function) to 1 over this many steps, then vanish"})
    insert_positions: list[int] | None = field(default=None, metadata={
        "help": "target indices of new layers for insert/identity (default: on top)"})
    insert_init: str = field(default="copy", metadata={"help": "insert: copy, random or copy_noise"})
    insert_noise_std: float = 0.01
    width_noise_std: float = field(default=0.0, metadata={"help": "net2net: noise on the copies"})
    width_split_noise: float = field(default=0.0, metadata={
        "help": "net2net, bert2bert_fpi/aki, double: the copies of a unit take random shares "
                "(1/c times 1 + N(0, s^2), summing to 1) of its outgoing weights, so the grown "
                "model stays exact but the copies separate in training; 0 keeps them twins "
                "unless dropout separates them"})
    growth_seed: int = 0
    reset_optimizer: bool = field(default=False, metadata={
        "help": "start AdamW from zero instead of mapping the source checkpoint's moments"})
    fuse_init_scheme: list[str] | None = field(default=None, metadata={
        "help": "--grow_scheme ligo, as in the original LiGO commands: DEPTH WIDTH init the "
                "operator was trained from; checked against the operator's record (a trained "
                "operator's init cannot be changed here)"})

    def __post_init__(self):
        check_ranges(self)
        if self.fuse_init_scheme is not None:
            if self.grow_scheme != "ligo":
                raise ValueError("--fuse_init_scheme describes a LiGO operator's init; it goes "
                                 "with --grow_scheme ligo (or to run_grow_distributed.py)")
            if len(self.fuse_init_scheme) != 2:
                raise ValueError("--fuse_init_scheme takes two values, DEPTH WIDTH (e.g. "
                                 f"stackbert_noisy rand), not {' '.join(self.fuse_init_scheme)}")
        if self.grow_scheme == "ligo" and not self.pretrained_ligo_path:
            raise ValueError("--grow_scheme ligo needs --pretrained_ligo_path (the output_dir of "
                             "run_grow_distributed.py)")
        if self.pretrained_ligo_path and self.grow_scheme != "ligo":
            raise ValueError(f"--pretrained_ligo_path is given but --grow_scheme is "
                             f"{self.grow_scheme}; use --grow_scheme ligo")
        if self.msg and self.grow_scheme not in ("msg", "stack"):
            raise ValueError(f"--width_scheme msg fades new layers in on top of the stack: use "
                             f"--grow_scheme msg or stack, not {self.grow_scheme}")

    @property
    def msg(self) -> bool:
        """MSG: the grown model trains with masks over its new structures (ligo.train.msg)."""
        return "msg" in (self.grow_scheme, self.width_scheme)

    @property
    def grows(self) -> bool:
        return bool(self.source_model_path or self.pretrained_ligo_path)

    def check_operator_init(self) -> None:
        """--fuse_init_scheme (original LiGO command lines) must be the operator's own init:
        the operator is already trained, so a different value would silently mean nothing."""
        if self.fuse_init_scheme is None:
            return
        from ligo.operators.learned import read_description

        options = read_description(self.pretrained_ligo_path)["options"]
        given = " ".join(self.fuse_init_scheme)
        if options.get("init_from"):
            raise ValueError(f"--fuse_init_scheme {given}: the operator in "
                             f"{self.pretrained_ligo_path} was initialised from the fixed operator "
                             f"{' '.join(o for o in options['init_from'] if o)}; drop the flag")
        recorded = f"{options['depth_init']} {options['width_init']}"
        if given != recorded:
            raise ValueError(f"--fuse_init_scheme {given}, but the operator in "
                             f"{self.pretrained_ligo_path} was trained from {recorded}; a trained "
                             "operator's init cannot change: give that or drop the flag")

    def api_options(self) -> dict:
        """The same growth as keyword arguments of `ligo.grow`."""
        options = self.operator_options()
        if options["depth"] == "ligo":
            return options
        return {"depth": options["depth"], "width": options["width"], "seed": options["seed"],
                "positions": self.insert_positions, "insert_init": self.insert_init,
                "insert_noise_std": self.insert_noise_std, "width_noise_std": self.width_noise_std,
                "width_split_noise": self.width_split_noise}

    def operator_options(self) -> dict:
        """grow() keyword arguments (for ligo: which operator). `--grow_scheme` may also name a width operator
        (`--grow_scheme bert2bert_aki`): that width, with stacking for any new layers."""
        from ligo.operators.width import WIDTH_OPERATORS

        depth, width = self.grow_scheme, self.width_scheme
        if depth == "ligo":
            return {"depth": "ligo", "operator": str(Path(self.pretrained_ligo_path).resolve())}
        if depth in WIDTH_OPERATORS:
            if width is not None and width != depth:
                raise ValueError(f"--grow_scheme {depth} is a width operator but --width_scheme "
                                 f"says {width}; give one of them")
            depth, width = "stack", depth
        return {"depth": depth, "width": width, "seed": self.growth_seed,
                "depth_options": {"positions": self.insert_positions, "init": self.insert_init,
                                  "noise_std": self.insert_noise_std},
                "width_options": {"noise_std": self.width_noise_std,
                                  "split_noise": self.width_split_noise}}


@dataclass
class ScheduleArguments:
    """Growth inside one run (ligo.schedule). Lists accept commas: --stages 3,6,12."""

    stages: list[str] | None = field(default=None, metadata={
        "help": "progressive stacking: layers per stage, e.g. 3,6,12"})
    stage_steps: list[str] | None = field(default=None, metadata={
        "help": "optimizer steps per stage, e.g. 20000,20000,60000"})
    stage_epochs: list[str] | None = field(default=None, metadata={
        "help": "or epochs per stage, e.g. 1,1,3"})
    stage_operator: str = field(default="stack", metadata={
        "help": "depth operator between stages: stack, interpolate, ligo or msg (new layers "
                "faded in under MSG's masks over --msg_ramp_steps)"})
    stage_ligo_steps: int = field(default=100, metadata={
        "help": "--stage_operator ligo: operator training steps at each transition"})
    stage_ligo_learning_rate: float = 1e-3
    insert_patches: list[str] | None = field(default=None, metadata={
        "help": "progressive layer insertion: FRACTION:INDEX,... e.g. 0.1:1,0.2:1,0.3:2 "
                "(at 10%% of training insert a layer at index 1, ...); init from "
                "--insert_init / --insert_noise_std"})
    initial_num_layers: int | None = None
    double_at: list[str] | None = field(default=None, metadata={
        "help": "staged training: STEP:depth|width|both,... doubling events"})
    restart_steps: list[str] | None = field(default=None, metadata={
        "help": "for each --double_at event, the LR-schedule step to restart from "
                "(default: the event's own step)"})
    restart_warmup_steps: int = field(default=0, metadata={
        "help": "re-warm the LR over this many steps after each staged-training growth"})
    reset_lr_scheduler: bool = field(default=False, metadata={
        "help": "after each staged-training growth, start the schedule over on the remaining steps"})
    grow_heads_at: list[str] | None = field(default=None, metadata={
        "help": "head growth at a fixed hidden size (LLaMA-style: the head size is its own): "
                "STEP:HEADS,... e.g. 1000:8 (query heads; key/value heads keep the group size)"})
    grow_when: str | None = field(default=None, metadata={
        "help": "slope: grow automatically (staged training's optimal schedule)"})
    auto_growth: list[str] = field(default_factory=lambda: ["depth", "width"], metadata={
        "help": "--grow_when slope: the growths, in order (depth, width, both)"})
    slope_window: float = 0.5
    slope_smoothing: float = 0.9

    def __post_init__(self):
        check_ranges(self)
        self.stages = _numbers(self.stages, int, "stages")
        self.stage_steps = _numbers(self.stage_steps, int, "stage_steps")
        self.stage_epochs = _numbers(self.stage_epochs, float, "stage_epochs")
        self.restart_steps = _numbers(self.restart_steps, int, "restart_steps")
        self.auto_growth = [t for item in self.auto_growth for t in item.split(",") if t]
        mechanisms = [name for name in ("stages", "insert_patches", "double_at", "grow_when",
                                        "grow_heads_at") if getattr(self, name)]
        if len(mechanisms) > 1:
            raise ValueError(f"choose one growth schedule, not {', '.join('--' + m for m in mechanisms)}")
        if self.stages:
            if any(b <= a for a, b in zip(self.stages, self.stages[1:], strict=False)) or self.stages[0] < 1:
                raise ValueError(f"--stages must be increasing layer counts, not {self.stages}")
            budgets = self.stage_steps or self.stage_epochs
            if bool(self.stage_steps) == bool(self.stage_epochs):
                raise ValueError("--stages needs exactly one of --stage_steps and --stage_epochs")
            if len(budgets) != len(self.stages):
                raise ValueError(f"--stages has {len(self.stages)} stages but "
                                 f"--stage_{'steps' if self.stage_steps else 'epochs'} has "
                                 f"{len(budgets)} values")
            if any(b <= 0 for b in budgets):
                raise ValueError(f"stage budgets must be positive, not {budgets}")
            if self.stage_operator not in ("stack", "interpolate", "ligo", "msg"):
                raise ValueError(f"--stage_operator must be stack, interpolate, ligo or msg, not "
                                 f"{self.stage_operator!r}")
        if self.insert_patches:
            patches = []
            for item in (t for raw in self.insert_patches for t in raw.split(",") if t):
                try:
                    fraction, index = item.split(":")
                    patches.append((float(fraction), int(index)))
                except ValueError:
                    raise ValueError(f"--insert_patches: {item!r} is not FRACTION:INDEX") from None
            fractions = [f for f, _ in patches]
            if any(not 0 < f < 1 for f in fractions):
                raise ValueError(f"--insert_patches fractions must lie in (0, 1): {fractions}")
            if any(b <= a for a, b in zip(fractions, fractions[1:], strict=False)):
                raise ValueError(f"--insert_patches fractions must increase: {fractions}")
            if any(i < 0 for _, i in patches):
                raise ValueError("--insert_patches indices must be >= 0")
            self.insert_patches = patches
        if self.double_at:
            events = []
            for item in (t for raw in self.double_at for t in raw.split(",") if t):
                step, _, what = item.partition(":")
                if what not in ("depth", "width", "both") or not step.isdigit():
                    raise ValueError(f"--double_at: {item!r} is not STEP:depth|width|both")
                events.append((int(step), what))
            if any(b[0] <= a[0] for a, b in zip(events, events[1:], strict=False)) or events[0][0] < 1:
                raise ValueError(f"--double_at steps must be positive and increase: {events}")
            if self.restart_steps and len(self.restart_steps) != len(events):
                raise ValueError(f"--restart_steps has {len(self.restart_steps)} values for "
                                 f"{len(events)} --double_at events")
            self.double_at = events
        if self.grow_heads_at:
            events = []
            for item in (t for raw in self.grow_heads_at for t in raw.split(",") if t):
                step, _, heads = item.partition(":")
                if not (step.isdigit() and heads.isdigit()):
                    raise ValueError(f"--grow_heads_at: {item!r} is not STEP:HEADS (e.g. 1000:8)")
                events.append((int(step), int(heads)))
            if (any(b[0] <= a[0] or b[1] <= a[1] for a, b in zip(events, events[1:], strict=False))
                    or events[0][0] < 1):
                raise ValueError(f"--grow_heads_at steps must be positive and increase, and so "
                                 f"must the head counts: {events}")
            self.grow_heads_at = events
        if self.grow_when not in (None, "slope"):
            raise ValueError(f"--grow_when must be slope, not {self.grow_when!r}")
        if any(t not in ("depth", "width", "both") for t in self.auto_growth):
            raise ValueError(f"--auto_growth takes depth, width or both: {self.auto_growth}")

    @property
    def active(self) -> bool:
        return bool(self.stages or self.insert_patches or self.double_at or self.grow_when
                    or self.grow_heads_at)


def _numbers(values, kind, name):
    if not values:
        return None
    try:
        return [kind(t) for raw in values for t in str(raw).split(",") if t]
    except ValueError:
        raise ValueError(f"--{name} takes numbers (e.g. 3,6,12), not {' '.join(values)}") from None


@dataclass
class LiGOArguments:
    """run_grow_distributed.py: which small model, what to learn, how to initialise."""

    source_model_path: str = field(default="", metadata={
        "help": "the small model folder (HF format, e.g. a finished run's output_dir)"})
    tune_width: bool = False
    tune_depth: bool = False
    fuse_init_scheme: list[str] = field(default_factory=lambda: ["stackbert_noisy", "rand"], metadata={
        "help": "DEPTH WIDTH init: depth rand, rand_softmax, stackbert, stackbert_noisy, "
                "interlace or interlace_noisy; width rand, rand_softmax, sel or sel_noisy"})
    fuse_init_noise: float = 0.03
    no_fuse_tie_param: bool = field(default=False, metadata={
        "help": "an expansion per module axis instead of the paper's tying"})
    width_form: str = field(default=LIGO_WIDTH_FORM, metadata={
        "help": "full (the paper's D2 x D1 matrices, every row learned) or structured (first D1 "
                "rows fixed to the identity, only the new rows learned: the official code's)"})
    tune_residual: bool = False
    tune_residual_noise: float = 0.01
    tune_small_model: bool = False
    init_from_operator: list[str] | None = field(default=None, metadata={
        "help": "DEPTH [WIDTH]: start exactly where this fixed operator ends (e.g. stack "
                "bert2bert_aki)"})
    width_split_noise: float = field(default=0.0, metadata={
        "help": "with --init_from_operator: that operator's --width_split_noise (its copied "
                "units take split shares; run_lm_distributed.py), so the operator starts where "
                "the fixed operator's run with the same split starts"})
    ligo_seed: int = 0

    def __post_init__(self):
        check_ranges(self)
        if not self.source_model_path:
            raise ValueError("--source_model_path is required (the small model to grow)")
        if len(self.fuse_init_scheme) != 2:
            raise ValueError("--fuse_init_scheme takes two values, DEPTH WIDTH (e.g. "
                             f"stackbert_noisy rand), not {self.fuse_init_scheme}")
        if self.init_from_operator is not None and len(self.init_from_operator) not in (1, 2):
            raise ValueError("--init_from_operator takes DEPTH [WIDTH]")
        self.options()  # validates the schemes now, before any work

    def options(self):
        from ligo.operators.depth import DEPTH_OPERATORS
        from ligo.operators.learned import LiGOOptions
        from ligo.operators.width import WIDTH_OPERATORS

        if self.init_from_operator:
            depth, width = (list(self.init_from_operator) + [None])[:2]
            if "msg" in (depth, width):
                raise ValueError("--init_from_operator msg: MSG's weights compute the source's "
                                 "function only under its training-time masks; start from "
                                 "another operator")
            if depth not in DEPTH_OPERATORS or (width is not None and width not in WIDTH_OPERATORS):
                raise ValueError(f"--init_from_operator {' '.join(self.init_from_operator)}: depth "
                                 f"one of {', '.join(DEPTH_OPERATORS)}, width one of "
                                 f"{', '.join(WIDTH_OPERATORS)}")
        return LiGOOptions(tune_width=self.tune_width, tune_depth=self.tune_depth,
                           depth_init=self.fuse_init_scheme[0], width_init=self.fuse_init_scheme[1],
                           init_noise=self.fuse_init_noise, width_form=self.width_form,
                           tie=not self.no_fuse_tie_param, tune_residual=self.tune_residual,
                           residual_noise=self.tune_residual_noise,
                           tune_small_model=self.tune_small_model,
                           init_from=tuple(self.init_from_operator) if self.init_from_operator else None,
                           init_split_noise=self.width_split_noise,
                           seed=self.ligo_seed)


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls) -> None:
    """One `--field` per dataclass field (type, default, help and aliases from the field)."""
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group(cls.__name__)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        options: dict = {"default": default, "help": f.metadata.get("help")}
        if f.name in RANGES:
            options["help"] = f"{options['help'] or ''} (range {RANGES[f.name]})".strip()
        args = typing.get_args(kind)
        list_kind = kind if typing.get_origin(kind) is list else next(
            (a for a in args if typing.get_origin(a) is list), None)
        if f.metadata.get("accepts_auto"):
            options.update(type=_str2bool_or_auto, nargs="?", const=True)
        elif kind is bool:
            options.update(type=_str2bool, nargs="?", const=True)
        elif list_kind is not None:
            options.update(nargs="+", type=typing.get_args(list_kind)[0])
        else:
            base = next((a for a in args if a is not type(None)), kind) if args else kind
            options["type"] = base
        names = f.metadata.get("aliases", []) + f.metadata.get("deprecated_aliases", [])
        group.add_argument("--" + f.name, *names, **options)


def _note_deprecated_aliases(groups: tuple, argv: list[str]) -> None:
    import os
    import sys

    if os.environ.get("RANK", "0") != "0":
        return
    for cls in groups:
        for f in dataclasses.fields(cls):
            for alias in f.metadata.get("deprecated_aliases", []):
                if any(token == alias or token.startswith(alias + "=") for token in argv):
                    print(f"note: {alias} is the original LiGO name of --{f.name}; it is "
                          f"accepted, but use --{f.name}", file=sys.stderr)


NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


class _NegativeValuesParser(argparse.ArgumentParser):
    """Reads `--learning_rate -1e-4` as a (negative) value, so the range check can name it,
    instead of argparse's "expected one argument": argparse's own negative-number pattern
    misses exponents, so such a value is joined to its flag (`--learning_rate=-1e-4`)."""

    def parse_known_args(self, args=None, namespace=None):
        import sys

        joined: list[str] = []
        for token in list(sys.argv[1:] if args is None else args):
            previous = joined[-1] if joined else ""
            if (NEGATIVE_NUMBER.match(token) and previous.startswith("--") and "=" not in previous
                    and previous != "--"):
                joined[-1] = f"{previous}={token}"
            else:
                joined.append(token)
        return super().parse_known_args(joined, namespace)


def argument_parser(description: str = "", **options) -> argparse.ArgumentParser:
    """An ArgumentParser that reads a negative number after a flag as its value."""
    return _NegativeValuesParser(description=description, **options)


def parse_args(groups: tuple, argv: list[str] | None = None, description: str = ""):
    """Parse `--config FILE` (argument file) then the command line into the dataclasses."""
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", action="append", default=[])
    known, rest = pre.parse_known_args(argv)
    file_argv = [token for path in known.config for token in read_argument_file(path)]

    parser = argument_parser(description)
    parser.add_argument("--config", action="append", default=[],
                        help="argument file with one 'key = value' per line; repeatable")
    for cls in groups:
        add_dataclass_arguments(parser, cls)
    namespace = parser.parse_args(file_argv + rest)
    _note_deprecated_aliases(groups, file_argv + rest)
    return tuple(from_namespace(cls, namespace) for cls in groups)


def from_namespace(cls, namespace: argparse.Namespace):
    """The dataclass `cls` built from the parsed flags of add_dataclass_arguments."""
    values = vars(namespace)
    return cls(**{f.name: values[f.name] for f in dataclasses.fields(cls)})
