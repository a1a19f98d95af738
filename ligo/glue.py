"""GLUE fine-tuning of any checkpoint (ours or an HF BERT/RoBERTa folder).

    python -m ligo.glue out/bert --glue_dir glue_data --tasks SST-2 MRPC STS-B --output_dir out/glue
    python -m ligo.glue out/bert --task_dir my_task --task_type classification --output_dir out/mine

Tasks are read from the standard GLUE folder layout (`<glue_dir>/<TASK>/train.tsv`, `dev.tsv`,
`test.tsv`, each task with its own columns, as downloaded by the GLUE script) or, with network,
from the HF `datasets` hub (`--from_hub`). For every task a learning-rate sweep times several
seeds is run; the best dev score picks the run whose test predictions are written in the GLUE
submission format (`<output_dir>/submission/<TASK>.tsv`). Metrics follow the benchmark:
accuracy; F1 for MRPC and QQP; Matthews correlation for CoLA; Pearson and Spearman for STS-B;
a task with two metrics scores their mean, MNLI the mean of matched and mismatched accuracy,
and the GLUE score is the mean of the task scores.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ligo import distributed
from ligo.fileio import atomic_write_text, refuse_foreign_output, refuse_output_holding_inputs
from ligo.precision import check_bfloat16

log = logging.getLogger("ligo.glue")


@dataclass(frozen=True)
class Task:
    name: str  # GLUE folder / submission name
    a: str | int  # column (name, or index for header-less files) of the first text
    b: str | int | None  # second text, for sentence-pair tasks
    label: str | int
    labels: tuple[str, ...] | None  # None: regression
    metrics: tuple[str, ...]  # averaged into the task score
    header: bool = True  # train/dev files have a header row (CoLA's do not)
    test_columns: tuple[str, str, str | None] = ("index", "sentence", None)  # id, a, b
    dev: dict = field(default_factory=lambda: {"": "dev.tsv"})
    test: dict = field(default_factory=lambda: {"": "test.tsv"})
    hub: tuple[str, str] | None = None  # (dataset, config) on the HF hub


def _pair(a, b, test=("index", "sentence1", "sentence2")):
    return dict(a=a, b=b, test_columns=test)


TASKS: dict[str, Task] = {t.name: t for t in [
    Task("CoLA", 3, None, 1, ("0", "1"), ("mcc",), header=False, hub=("glue", "cola")),
    Task("SST-2", "sentence", None, "label", ("0", "1"), ("accuracy",), hub=("glue", "sst2")),
    Task("MRPC", label="Quality", labels=("0", "1"), metrics=("f1", "accuracy"), hub=("glue", "mrpc"),
         **_pair("#1 String", "#2 String", ("index", "#1 String", "#2 String"))),
    Task("STS-B", label="score", labels=None, metrics=("pearson", "spearman"), hub=("glue", "stsb"),
         **_pair("sentence1", "sentence2")),
    Task("QQP", label="is_duplicate", labels=("0", "1"), metrics=("f1", "accuracy"), hub=("glue", "qqp"),
         **_pair("question1", "question2", ("id", "question1", "question2"))),
    Task("MNLI", label="gold_label", labels=("contradiction", "entailment", "neutral"),
         metrics=("accuracy",), dev={"-m": "dev_matched.tsv", "-mm": "dev_mismatched.tsv"},
         test={"-m": "test_matched.tsv", "-mm": "test_mismatched.tsv"}, hub=("glue", "mnli"),
         **_pair("sentence1", "sentence2")),
    Task("QNLI", label="label", labels=("entailment", "not_entailment"), metrics=("accuracy",),
         hub=("glue", "qnli"), **_pair("question", "sentence", ("index", "question", "sentence"))),
    Task("RTE", label="label", labels=("entailment", "not_entailment"), metrics=("accuracy",),
         hub=("glue", "rte"), **_pair("sentence1", "sentence2")),
    Task("WNLI", label="label", labels=("0", "1"), metrics=("accuracy",), hub=("glue", "wnli"),
         **_pair("sentence1", "sentence2")),
]}


@dataclass
class Split:
    a: list[str]
    b: list[str] | None
    labels: list | None  # label strings (classification) or floats (regression); None for test
    ids: list[str] | None = None  # test-set indices for the submission
    encoded: tuple | None = None  # (max_length, tokenizer output): tokenised once per sweep


def custom_task(task_dir: Path, task_type: str) -> Task:
    """A user's task in the same TSV layout: `sentence` or `sentence1`/`sentence2`, then
    `label` (classification) or `score`/`label` (regression), with a header row."""
    header = (task_dir / "train.tsv").read_text(encoding="utf-8").split("\n", 1)[0].split("\t")
    a, b = ("sentence", None) if "sentence" in header else ("sentence1", "sentence2")
    if a not in header or (b and b not in header):
        raise ValueError(f"{task_dir}/train.tsv needs a 'sentence' or 'sentence1'+'sentence2' "
                         f"column; it has {header}")
    label = "score" if task_type == "regression" and "score" in header else "label"
    if label not in header:
        raise ValueError(f"{task_dir}/train.tsv has no {label!r} column; it has {header}")
    labels = None
    if task_type == "classification":
        rows = read_rows(task_dir / "train.tsv", True)
        labels = tuple(sorted({row[label] for row in rows}))
    return Task(task_dir.name, a, b, label, labels,
                ("accuracy",) if labels else ("pearson", "spearman"),
                test_columns=("index", a, b))


def read_rows(path: Path, header: bool) -> list:
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    if not header:
        return rows
    names, width = rows[0], len(rows[0])
    good = [dict(zip(names, row, strict=False)) for row in rows[1:] if len(row) == width]
    if len(good) < len(rows) - 1:  # QQP's train.tsv has a few broken lines
        log.warning("%s: skipped %d malformed rows", path, len(rows) - 1 - len(good))
    return good


def read_split(task: Task, path: Path, test: bool = False) -> Split:
    if not path.is_file():
        raise FileNotFoundError(f"{task.name}: {path} does not exist (GLUE layout: "
                                f"<glue_dir>/{task.name}/train.tsv, dev.tsv, test.tsv)")
    if test:
        ident, a, b = task.test_columns
        rows = read_rows(path, True)
        if not rows or a not in rows[0]:
            raise ValueError(f"{path}: no {a!r} column; is this {task.name}'s test.tsv?")
        # a task of one's own may label its test set: then it is scored, not only predicted
        labels = [r[task.label] for r in rows] if task.label in rows[0] else None
        if labels is not None:
            labels = _checked_labels(task, labels, path)
        return Split([r[a] for r in rows], [r[b] for r in rows] if b else None, labels,
                     [r.get(ident, str(i)) for i, r in enumerate(rows)])
    rows = read_rows(path, task.header)
    try:
        labels = [r[task.label] for r in rows]
        a = [r[task.a] for r in rows]
        b = [r[task.b] for r in rows] if task.b is not None else None
    except (KeyError, IndexError) as error:
        raise ValueError(f"{path} does not have {task.name}'s columns (missing {error})") from error
    return Split(a, b, _checked_labels(task, labels, path))


def _checked_labels(task: Task, labels: list, path: Path) -> list:
    if task.labels is None:
        try:
            return [float(x) for x in labels]
        except ValueError as error:
            raise ValueError(f"{path}: a score is not a number ({error})") from None
    unknown = set(labels) - set(task.labels)
    if unknown:
        raise ValueError(f"{path}: labels {sorted(unknown)[:3]} are not {task.name} labels {task.labels}")
    return labels


def compute_metrics(task: Task, predictions: np.ndarray, labels) -> dict[str, float]:
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    if task.labels is None:
        return {"pearson": float(pearsonr(predictions, labels)[0]),
                "spearman": float(spearmanr(predictions, labels)[0])}
    out = {"accuracy": float(accuracy_score(labels, predictions))}
    if "f1" in task.metrics:
        out["f1"] = float(f1_score(labels, predictions, pos_label=task.labels[-1]))  # "1"
    if "mcc" in task.metrics:
        out["mcc"] = float(matthews_corrcoef(labels, predictions))
    return out


def task_score(task: Task, dev_metrics: dict[str, dict[str, float]]) -> float:
    """Mean of the task's metrics, averaged over its dev sets (MNLI: matched, mismatched)."""
    return float(np.mean([m[name] for m in dev_metrics.values() for name in task.metrics]))


def glue_average(scores: dict[str, float]) -> float:
    return float(np.mean(list(scores.values())))


# ---------------------------------------------------------------------------- fine-tuning
@dataclass
class FinetuneArgs:
    max_seq_length: int = 128
    batch_size: int = 32
    epochs: float = 3.0
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_train_samples: int | None = None
    bf16: bool = False
    data_parallel: bool = False  # every process takes a share of each batch of one run
    random_init: bool = False  # the model's architecture and tokenizer, none of its weights


def _encode(tokenizer, split: Split, max_length: int):
    """The split tokenised; computed once, then reused by every run and every evaluation."""
    if split.encoded is None or split.encoded[0] != max_length:
        split.encoded = (max_length, tokenizer(split.a, split.b, truncation=True, max_length=max_length))
    return split.encoded[1]


def _batches(encoded, order: np.ndarray, size: int, tokenizer, info=None):
    """(rows, padded batch) for each batch of `order`. With `info`, the rows are this process's
    contiguous share of the batch, padded to the whole batch's longest row, so the shares of
    all processes are exactly the rows of the one-process batch (a share may be empty)."""
    keys = [k for k in ("input_ids", "token_type_ids", "attention_mask") if k in encoded]
    for start in range(0, len(order), size):
        part = order[start:start + size]
        longest = max(len(encoded["input_ids"][i]) for i in part)
        if info is not None:
            part = np.array_split(part, info.world_size)[info.rank]
        if len(part) == 0:
            yield part, None
            continue
        yield part, tokenizer.pad({k: [encoded[k][i] for i in part] for k in keys},
                                  padding="max_length", max_length=longest, return_tensors="pt")


def _targets(task: Task, split: Split) -> torch.Tensor:
    if task.labels is None:
        return torch.tensor(split.labels, dtype=torch.float32)
    return torch.tensor([task.labels.index(x) for x in split.labels])


@torch.no_grad()
def predict(model, tokenizer, task: Task, split: Split, args: FinetuneArgs,
            info: distributed.DistInfo | None = None) -> np.ndarray:
    """Predictions for every row of `split`; with `args.data_parallel`, each process predicts
    a contiguous share and all of them receive the whole (collective)."""
    model.eval()
    encoded = _encode(tokenizer, split, args.max_seq_length)
    rows = np.arange(len(split.a))
    share = _data_parallel_group(args, info)
    if share is not None:
        rows = np.array_split(rows, share.world_size)[share.rank]
    outputs = [torch.zeros(0, dtype=torch.float32 if task.labels is None else torch.long)]
    for _, batch in _batches(encoded, rows, args.batch_size * 2, tokenizer):
        with _autocast(args, model):
            logits = model(**{k: v.to(model.device) for k, v in batch.items()}).logits.float()
        outputs.append(logits[:, 0] if task.labels is None else logits.argmax(-1))
    predictions = torch.cat(outputs).cpu().numpy()
    if share is not None:
        predictions = np.concatenate(distributed.all_gather_objects(predictions, share))
    return predictions if task.labels is None else np.asarray([task.labels[i] for i in predictions])


def _data_parallel_group(args: FinetuneArgs, info):
    """The processes that share each batch, or None when a run is one process's alone."""
    return info if args.data_parallel and info is not None and info.enabled else None


def _autocast(args: FinetuneArgs, model):
    device = next(model.parameters()).device
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)


def _batch_loss_sum(model, task: Task, batch: dict, targets: torch.Tensor) -> torch.Tensor:
    """The summed loss of a batch: cross-entropy, or squared error for regression (the
    losses transformers averages; summed here so shares of a batch add up exactly)."""
    logits = model(**batch).logits.float()
    if task.labels is None:
        return torch.nn.functional.mse_loss(logits[:, 0], targets, reduction="sum")
    return torch.nn.functional.cross_entropy(logits, targets, reduction="sum")


def finetune(model_dir: str, tokenizer, task: Task, train: Split, devs: dict[str, Split], lr: float,
             seed: int, args: FinetuneArgs, writer=None, tag: str = "",
             info: distributed.DistInfo | None = None):
    """One fine-tuning run, evaluated on every dev set after each epoch. Returns the best
    epoch's dev metrics and score, and the model (weights of that epoch).

    With `args.data_parallel` every process of `info` runs this together: each computes the
    summed loss of its share of the batch over the whole batch's size, and the gradients are
    summed over the processes, so the step equals the one-process step on the whole batch."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from ligo.train.optim import build_optimizer, build_scheduler

    torch.manual_seed(seed)
    num_labels = 1 if task.labels is None else len(task.labels)
    problem_type = "regression" if task.labels is None else "single_label_classification"
    if args.random_init:  # the baseline that shows what the pretrained weights are worth
        config = AutoConfig.from_pretrained(model_dir, num_labels=num_labels, problem_type=problem_type)
        model = AutoModelForSequenceClassification.from_config(config)
    else:
        from ligo.models import load_pretrained

        model = load_pretrained(AutoModelForSequenceClassification, model_dir,
                                num_labels=num_labels, problem_type=problem_type)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    model.to(info.device if info is not None else "cpu")
    share = _data_parallel_group(args, info)
    if share is not None:
        if share.rank:  # same initial weights on every process, but its own dropout masks
            torch.manual_seed(seed + 1_000_003 * share.rank)
    encoded = _encode(tokenizer, train, args.max_seq_length)
    targets = _targets(task, train)
    rng = np.random.default_rng(seed)
    steps_per_epoch = math.ceil(len(train.a) / args.batch_size)
    total = max(1, int(args.epochs * steps_per_epoch))
    optimizer = build_optimizer(model, lr, args.weight_decay, (0.9, 0.999), 1e-8)
    scheduler = build_scheduler(optimizer, "linear", int(args.warmup_ratio * total), total)
    best, best_score, best_state, step = None, -math.inf, None, 0
    while step < total:
        model.train()
        for index, (part, batch) in enumerate(_batches(encoded, rng.permutation(len(train.a)),
                                                       args.batch_size, tokenizer, share)):
            global_rows = min(args.batch_size, len(train.a) - index * args.batch_size)
            loss = torch.zeros((), dtype=torch.float64)
            if batch is not None:  # under data parallelism a share can be empty
                batch = {k: v.to(model.device) for k, v in batch.items()}
                with _autocast(args, model):
                    loss_sum = _batch_loss_sum(model, task, batch, targets[part].to(model.device))
                (loss_sum / global_rows).backward()
                loss = loss_sum.detach().double().cpu() / global_rows
            if share is not None:
                distributed.all_reduce_gradients(model, share)
                loss = distributed.all_reduce_sum(loss.to(share.device), share).cpu()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if writer is not None:
                writer.add_scalar(f"{tag}/train_loss", loss.item(), step)
            if step >= total:
                break
        metrics = {name: compute_metrics(task, predict(model, tokenizer, task, dev, args, info),
                                         dev.labels)
                   for name, dev in devs.items()}
        score = task_score(task, metrics)
        if writer is not None:
            writer.add_scalar(f"{tag}/dev_score", score, step)
            for name, values in metrics.items():
                for key, value in values.items():
                    writer.add_scalar(f"{tag}/dev{name}_{key}", value, step)
        if score > best_score:
            best, best_score = metrics, score
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    return best, best_score, model


def write_submission(path: Path, task: Task, split: Split, predictions: np.ndarray) -> None:
    lines = ["index\tprediction"]
    for ident, value in zip(split.ids, predictions, strict=True):
        lines.append(f"{ident}\t{value:.3f}" if task.labels is None else f"{ident}\t{value}")
    atomic_write_text(path, "\n".join(lines) + "\n")


def markdown_table(results: dict) -> str:
    names = list(results["tasks"])
    head = "| " + " | ".join(["model", *names, "average"]) + " |"
    rule = "|" + "---|" * (len(names) + 2)
    cells = [f"{100 * results['tasks'][n]['score']:.1f}" for n in names]
    model = Path(results["model"]).name + (" (random init)" if results.get("random_init") else "")
    row = "| " + " | ".join([model, *cells, f"{100 * results['average']:.1f}"]) + " |"
    return "\n".join([head, rule, row])


def load_task_data(task: Task, folder: Path | None, from_hub: bool, max_train: int | None):
    if from_hub:
        return _hub_data(task, max_train)
    train = read_split(task, folder / "train.tsv")
    if max_train:
        train = Split(train.a[:max_train], train.b[:max_train] if train.b else None, train.labels[:max_train])
    devs = {name: read_split(task, folder / file) for name, file in task.dev.items()}
    tests = {name: read_split(task, folder / file, test=True)
             for name, file in task.test.items() if (folder / file).is_file()}
    return train, devs, tests


def _hub_data(task: Task, max_train: int | None):
    try:
        import datasets
    except ImportError as error:
        raise ImportError("--from_hub needs the `datasets` package: pip install 'ligo[datasets]'") from error
    if task.hub is None:
        raise ValueError(f"{task.name} has no hub copy; use --glue_dir")
    data = datasets.load_dataset(*task.hub)
    names = data["train"].column_names
    a, b = names[0], (names[1] if task.b is not None else None)

    label_names = getattr(data["train"].features["label"], "names", None)

    def split(rows):
        if task.labels is None:
            labels = [float(x) for x in rows["label"]]
        elif label_names and set(label_names) <= set(task.labels):  # e.g. MNLI's names
            labels = [label_names[x] for x in rows["label"]]
        else:  # the TSV files spell these classes 0 / 1
            labels = [str(x) for x in rows["label"]]
        return Split(rows[a], rows[b] if b else None, labels, [str(i) for i in rows["idx"]])

    train = split(data["train"][: max_train or len(data["train"])])
    dev_names = {"": "validation"} if task.name != "MNLI" else {"-m": "validation_matched", "-mm": "validation_mismatched"}
    return train, {k: split(data[v][:]) for k, v in dev_names.items()}, {}


def _check_sequence_length(model_dir: str, max_seq_length: int) -> None:
    from ligo.families import family_of
    from ligo.models import load_config

    config = load_config(model_dir)
    limit = family_of(config).max_block_size(config)
    if max_seq_length > limit:
        raise ValueError(f"--max_seq_length {max_seq_length} is above the {limit} positions of "
                         f"the model in {model_dir}; lower it")


# what a sweep writes into --output_dir; anything else there makes it refuse the folder
GLUE_OUTPUTS = ("runs", "tensorboard", "submission", "results.json", "results.md")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--glue_dir", help="folder with one sub-folder per GLUE task")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), help=f"any of {', '.join(TASKS)}")
    parser.add_argument("--task_dir", help="a task of your own in the same TSV layout")
    parser.add_argument("--task_type", choices=["classification", "regression"], default="classification")
    parser.add_argument("--from_hub", action="store_true", help="read GLUE from the HF hub (network)")
    parser.add_argument("--learning_rates", type=float, nargs="+", default=[1e-5, 2e-5, 3e-5, 5e-5])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--max_train_samples", type=int)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--random_init", action="store_true",
                        help="fine-tune model_dir's architecture from random init (seeded by each "
                             "run's seed), with its tokenizer: the baseline for what pretraining buys")
    parser.add_argument("--distribute", choices=["runs", "data"], default="runs",
                        help="under torchrun: spread the sweep's runs over the processes (runs), "
                             "or run each run data-parallel on all of them (data)")
    parser.add_argument("--overwrite_output_dir", action="store_true",
                        help="write into an output folder that holds other files than an "
                             "earlier sweep's")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    from ligo.config import AT_LEAST_1, POSITIVE, Range, check_range

    for flag, value, valid in (("--epochs", args.epochs, POSITIVE),
                               ("--batch_size", args.batch_size, AT_LEAST_1),
                               ("--max_seq_length", args.max_seq_length, Range(8)),
                               ("--max_train_samples", args.max_train_samples, AT_LEAST_1)):
        check_range(flag, value, valid)
    for lr in args.learning_rates:
        check_range("--learning_rates", lr, Range(0, 1, low_open=True))
    from ligo.train.checkpoint import require_model_folder

    require_model_folder(args.model_dir)
    _check_sequence_length(args.model_dir, args.max_seq_length)
    refuse_output_holding_inputs(args.output_dir, {"model_dir": args.model_dir,
                                                   "--glue_dir": args.glue_dir,
                                                   "--task_dir": args.task_dir})
    refuse_foreign_output(args.output_dir, lambda name: name in GLUE_OUTPUTS,
                          args.overwrite_output_dir, "an earlier GLUE sweep's")
    if args.task_dir:
        tasks = {Path(args.task_dir).name: (custom_task(Path(args.task_dir), args.task_type), Path(args.task_dir))}
    elif args.glue_dir or args.from_hub:
        unknown = [t for t in args.tasks if t not in TASKS]
        if unknown:
            raise ValueError(f"unknown GLUE tasks {unknown}; choose from {', '.join(TASKS)}")
        tasks = {t: (TASKS[t], Path(args.glue_dir or ".") / t) for t in args.tasks}
    else:
        raise ValueError("give --glue_dir (GLUE layout), --task_dir (your own task) or --from_hub")
    info = distributed.init_distributed()
    try:
        check_bfloat16(args.bf16, info.device)
        return _sweep(args, tasks, info)
    finally:
        distributed.shutdown(info)


def _sweep(args, tasks: dict, info) -> dict:
    """Every (task, learning rate, seed) run. Under torchrun, `--distribute runs` (default):
    process r takes runs r, r + W, ... and predicts the test sets with its own best run per
    task; process 0 then picks each task's best run over all processes and publishes its
    predictions. `--distribute data`: the processes run every run together, each on a share
    of every batch (one run's wall-clock divided), and process 0 writes."""
    import shutil

    from tensorboardX import SummaryWriter

    out = Path(args.output_dir)
    runs_dir = out / "runs"
    if info.is_main:  # results of an earlier sweep in this folder must not join this one
        shutil.rmtree(runs_dir, ignore_errors=True)
    distributed.barrier(info)
    (out / "tensorboard").mkdir(parents=True, exist_ok=True)  # before the writers: no race
    data_parallel = args.distribute == "data"
    writes = info.is_main or not data_parallel
    writer = SummaryWriter(str(out / "tensorboard"), filename_suffix=f".rank{info.rank}") \
        if writes else None
    fargs = FinetuneArgs(args.max_seq_length, args.batch_size, args.epochs,
                         max_train_samples=args.max_train_samples, bf16=args.bf16,
                         data_parallel=data_parallel, random_init=args.random_init)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    plan = [(name, lr, seed) for name in tasks for lr in args.learning_rates for seed in args.seeds]
    data: dict = {}
    local_best: dict = {}
    for index, (name, lr, seed) in enumerate(plan):
        if not data_parallel and index % info.world_size != info.rank:
            continue
        task, folder = tasks[name]
        if name not in data:
            data[name] = load_task_data(task, folder, args.from_hub, args.max_train_samples)
        train, devs, tests = data[name]
        metrics, score, model = finetune(args.model_dir, tokenizer, task, train, devs, lr, seed,
                                         fargs, writer, f"{name}/lr{lr:g}_seed{seed}", info)
        log.info("%s lr %g seed %d: dev score %.4f", name, lr, seed, score)
        run = {"index": index, "learning_rate": lr, "seed": seed, "score": score, "dev": metrics}
        folder_out = runs_dir / name / f"run{index:03d}"
        if writes:
            folder_out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(folder_out / "result.json", json.dumps(run, indent=1))
        if name not in local_best or score > local_best[name]["score"]:
            local_best[name] = run
            for split_name, split in tests.items():  # only a new local best predicts the test set
                predictions = predict(model, tokenizer, task, split, fargs, info)  # collective
                if split.labels is not None:  # a labelled test set: score it too
                    run.setdefault("test", {})[split_name] = compute_metrics(task, predictions,
                                                                             split.labels)
                if writes:
                    write_submission(folder_out / f"{name}{split_name}.tsv", task, split, predictions)
            if writes and "test" in run:
                atomic_write_text(folder_out / "result.json", json.dumps(run, indent=1))
    if writer is not None:
        writer.close()
    distributed.barrier(info)
    if not info.is_main:
        return {}
    (out / "submission").mkdir(parents=True, exist_ok=True)
    results: dict = {"model": args.model_dir, "random_init": args.random_init,
                     "world_size": info.world_size, "distribute": args.distribute, "tasks": {}}
    for name, (task, folder) in tasks.items():
        runs = sorted((json.loads(p.read_text()) for p in (runs_dir / name).glob("run*/result.json")),
                      key=lambda r: r["index"])
        best = max(runs, key=lambda r: r["score"])  # ties: the earliest run in the plan
        for file in (runs_dir / name / f"run{best['index']:03d}").glob("*.tsv"):
            shutil.copy2(file, out / "submission" / file.name)
        devs = data[name][1] if name in data else load_task_data(task, folder, args.from_hub, 1)[1]
        results["tasks"][name] = {"score": best["score"], "best": best, "runs": runs,
                                  "majority_dev_accuracy": _majority(devs) if task.labels else None}
        if "test" in best:  # the dev-selected run's score on the labelled test set
            results["tasks"][name]["test"] = best["test"]
            results["tasks"][name]["test_score"] = task_score(task, best["test"])
    results["average"] = glue_average({n: t["score"] for n, t in results["tasks"].items()})
    atomic_write_text(out / "results.json", json.dumps(results, indent=1) + "\n")
    atomic_write_text(out / "results.md", markdown_table(results) + "\n")
    print(markdown_table(results))
    return results


def _majority(devs: dict[str, Split]) -> float:
    labels = [x for dev in devs.values() for x in dev.labels]
    values, counts = np.unique(labels, return_counts=True)
    return float(counts.max() / counts.sum())


if __name__ == "__main__":
    from ligo.cli import run, setup_logging

    setup_logging()
    run(main)
