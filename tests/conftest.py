"""Shared fixtures: paths to the real data in ../shared/data and tiny run arguments."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

# The suite compares results on the CPU (float64 exactness, bit-exact resume, gloo equivalence):
# a machine's GPUs stay hidden from it (set before torch first looks) unless LIGO_TEST_GPU=1,
# which runs tests/test_gpu.py's checks on the first one
if os.environ.get("LIGO_TEST_GPU") != "1":
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
SHARED = Path(os.environ.get("LIGO_SHARED_DATA", REPO.parent / "shared" / "data"))
BERT_VOCAB = SHARED / "vocab" / "bert-base-uncased-vocab.txt"
GPT2_BPE = SHARED / "vocab" / "gpt2"
WIKI = SHARED / "corpus" / "wiki.txt"
TOKENIZERS = {"bert": BERT_VOCAB, "roberta": GPT2_BPE, "gpt2": GPT2_BPE, "llama": GPT2_BPE,
              "mistral": GPT2_BPE}


def pytest_collection_modifyitems(config, items):
    if not WIKI.is_file() and os.environ.get("CI"):
        # in CI a missing data folder must fail loudly, not turn half the suite into skips
        raise pytest.UsageError(f"real data not found at {SHARED} (set LIGO_SHARED_DATA)")
    if not WIKI.is_file():
        skip = pytest.mark.skip(reason=f"real data not found at {SHARED} (set LIGO_SHARED_DATA)")
        for item in items:
            if "shared_data" in getattr(item, "fixturenames", ()):
                item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return SHARED


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One token cache for the whole session: each corpus/tokenizer pair is tokenised once."""
    return tmp_path_factory.mktemp("token_cache")


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory, shared_data) -> Path:
    """The first ~400 kB of the Wikipedia corpus (real articles, cut at an article end)."""
    text = WIKI.read_text(encoding="utf-8")
    cut = text.index("\n\n", 400_000)
    path = tmp_path_factory.mktemp("corpus") / "wiki_head.txt"
    path.write_text(text[:cut] + "\n", encoding="utf-8")
    return path


@pytest.fixture
def hf_model(tmp_path) -> Path:
    """An ordinary HF model folder (bert-tiny, random weights, no run.json): someone's model."""
    from transformers import AutoConfig, AutoModelForMaskedLM

    folder = tmp_path / "someones_model"
    AutoModelForMaskedLM.from_config(AutoConfig.from_pretrained(CONFIGS / "bert-tiny.json")
                                     ).save_pretrained(folder)
    return folder


def write_config(folder: Path, family: str, **changes) -> Path:
    """A copy of configs/<family>-tiny.json with `changes` applied, in `folder` (made if new)."""
    values = json.loads((CONFIGS / f"{family}-tiny.json").read_text())
    values.update(changes)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{family}-custom.json"
    path.write_text(json.dumps(values))
    return path


def fast_precision() -> list[str]:
    """`--bf16 true` where this machine runs bf16 natively (it halves a 50k-way head's time),
    else nothing: a CPU without bf16 instructions runs bf16 matmuls ~200x slower and the run
    would refuse the flag (ligo.precision)."""
    from ligo.precision import native_bfloat16

    return ["--bf16", "true"] if native_bfloat16() else []


def run_argv(output_dir: Path, family: str, corpus: Path, cache: Path, *extra: str,
             config: Path | None = None, tokenizer: Path | str = "published") -> list[str]:
    """Arguments for a tiny, quiet pretraining run on real text. `tokenizer`: "published"
    (the family's published vocabulary), "trained" (one trained on `corpus` with the config's
    vocab_size, once per `cache`: GPT-2's 50k-way head is most of a tiny model's step), or a
    path (e.g. a source run's folder: a grown run tokenises as its source did)."""
    if tokenizer == "trained":
        tokenizer_flag = []
    else:
        tokenizer_flag = ["--tokenizer_path", str(TOKENIZERS[family] if tokenizer == "published" else tokenizer)]
    return ["--config", str(CONFIGS / f"{family}_wiki.txt"),
            "--config_name", str(config or CONFIGS / f"{family}-tiny.json"),
            "--output_dir", str(output_dir), "--train_files", str(corpus), *tokenizer_flag,
            "--cache_dir", str(cache),
            "--block_size", "64", "--per_device_train_batch_size", "8",
            "--per_device_eval_batch_size", "16", "--eval_max_batches", "4",
            "--bf16", "false", "--disable_tqdm", "--logging_steps", "5", *extra]


TRAINED_VOCAB = 8192  # of the tokenizers that tests train on their corpus (run_argv's "trained")


@pytest.fixture(scope="session")
def small_run(tmp_path_factory, small_corpus, cache_dir):
    """`small_run(family)`: that family's tiny model (2 layers, hidden 64) pretrained 300
    steps on real text, once per session; the source of every growth test (read, never
    written). Under pytest-xdist the workers share one copy: the first to need it trains it
    while the others wait. GPT-2's has a vocabulary of TRAINED_VOCAB, a BPE trained on the
    corpus (with the published 50k one its head was most of the run's time): runs grown from
    it use `write_config(..., vocab_size=TRAINED_VOCAB)` and the source's own tokenizer."""
    from filelock import FileLock

    from ligo.pretrain import main

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the folder all workers' temporary folders are in

    def get(family: str = "bert") -> Path:
        out = root / f"small_run_{family}" / "run"
        with FileLock(str(root / f"small_run_{family}.lock")):
            if not (out / "results.json").is_file():  # written last: the run finished
                small = {}
                if family == "gpt2":
                    small = dict(config=write_config(out.parent, family, vocab_size=TRAINED_VOCAB),
                                 tokenizer="trained")
                main(run_argv(out, family, small_corpus, cache_dir, "--max_steps", "300",
                              "--learning_rate", "1e-3", "--warmup_steps", "20", "--eval_steps",
                              "300", "--documents", "line", "--ckpt_steps", "300",
                              "--overwrite_output_dir", **small))
        return out

    return get


def launch_torchrun(argv: list[str], script: str | None = "run_lm_distributed.py", nproc: int = 2, *,
                    cpu: bool = True):
    """Run `script` (None: argv says what, e.g. `-m module ...`) under torchrun with `nproc`
    processes, each with ligo from this checkout and one thread (two multi-threaded processes on
    the same cores slow each other 10x+); the finished process. `cpu`: gloo processes on the
    CPU, whatever GPUs the machine has (the suite compares results on the CPU, and a machine may
    have fewer GPUs than processes); else what the machine offers (NCCL on its GPUs)."""
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
           **({"CUDA_VISIBLE_DEVICES": ""} if cpu else {})}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node", str(nproc), *([str(REPO / script)] if script else []), *argv],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=600)


def torchrun(argv: list[str], script: str | None = "run_lm_distributed.py", nproc: int = 2, *,
             cpu: bool = True):
    """launch_torchrun, failing the test on a non-zero exit."""
    done = launch_torchrun(argv, script, nproc, cpu=cpu)
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def logged_losses(output_dir: Path, split: str) -> list[float]:
    """The loss of each of a run's metrics.jsonl rows of `split` ("train" or "eval"), in order."""
    rows = [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]
    return [row["loss"] for row in rows if row["split"] == split]


@pytest.fixture
def float64_rmsnorm(monkeypatch):
    """transformers' LlamaRMSNorm computes in float32 whatever the model's dtype, which limits
    a float64 comparison to ~1e-7; exactness checks compute the same formula in the input's
    dtype instead."""
    import torch
    from transformers.models.llama import modeling_llama
    from transformers.models.mistral import modeling_mistral

    def forward(self, hidden_states):
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        return self.weight * (hidden_states * torch.rsqrt(variance + self.variance_epsilon))

    monkeypatch.setattr(modeling_llama.LlamaRMSNorm, "forward", forward)
    monkeypatch.setattr(modeling_mistral.MistralRMSNorm, "forward", forward)


@pytest.fixture
def token_ids():
    import torch

    return torch.randint(5, 1000, (2, 16), generator=torch.Generator().manual_seed(0))


def assert_resume_equals_straight(argv, stop_after: int) -> dict:
    """Run `argv("straight")`; run `argv("resumed")` stopped after `stop_after` steps, then
    resumed with --should_continue: both end with the same weights, bit for bit. Returns the
    straight run's results."""
    import torch
    from safetensors.torch import load_file

    from ligo.pretrain import main

    straight = main(argv("straight"))
    first = main(argv("resumed", "--stop_after_steps", str(stop_after)))
    assert first["step"] == stop_after and not first["finished"]
    main(argv("resumed", "--should_continue"))
    folder = lambda name: Path(argv(name)[argv(name).index("--output_dir") + 1])  # noqa: E731
    a, b = load_file(folder("straight") / "model.safetensors"), load_file(folder("resumed") / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    return straight


def assert_same_weights(first: Path, second: Path, atol: float = 0.0) -> None:
    """The model.safetensors of two run folders hold the same tensors (to `atol`)."""
    import torch
    from safetensors.torch import load_file

    a, b = load_file(Path(first) / "model.safetensors"), load_file(Path(second) / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=atol, msg=key)


def assert_two_process_ddp_equals_one_process(argv, atol: float = 2e-6) -> None:
    """`argv(name)` run in this process as "single", and under 2-process torchrun as "ddp" with
    half the per-device batch (the same global batch): both save the same weights (to `atol`)."""
    from ligo.pretrain import main

    main(argv("single"))
    ddp = argv("ddp")
    index = ddp.index("--per_device_train_batch_size") + 1
    ddp[index] = str(int(ddp[index]) // 2)
    torchrun(ddp)
    folder = lambda name: Path(argv(name)[argv(name).index("--output_dir") + 1])  # noqa: E731
    assert_same_weights(folder("single"), folder("ddp"), atol)
