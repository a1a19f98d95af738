# The two quickstart commands:  make quickstart   and   make test
# Both set up .venv first (scripts/setup.sh: CPU torch 2.13.0 unless a torch is already there).
# USE_ACTIVE_ENV=1: install into and run with the active virtualenv/conda env's python
ifeq ($(USE_ACTIVE_ENV),1)
PY ?= python
STAMP := .ligo-installed-active-env
else
PY ?= .venv/bin/python
STAMP := .venv/.ligo-installed
endif
QUICKSTART_DIR ?= out/quickstart

.PHONY: setup quickstart lint test bench-throughput bench-tokenize bench-ligo-step clean

setup: $(STAMP)

$(STAMP): setup.cfg pyproject.toml scripts/setup.sh
	bash scripts/setup.sh
	touch $@

# pretrain a small GPT-2 on the embedded default corpus (BBC News), ~5 minutes on 2 cores, with
# the recipe of bench/growth.py's gpt2 source model (8k BPE trained on the corpus, no dropout,
# LR 2e-3); its last line says how far below the unigram line it ended
quickstart: setup
	$(PY) run_lm_distributed.py --config configs/gpt2_wiki.txt \
		--config_name configs/gpt2-2L-128H-8k.json --output_dir $(QUICKSTART_DIR) \
		--learning_rate 2e-3 --warmup_steps 40 --max_steps 700 --eval_steps 100 \
		--logging_steps 50 --overwrite_output_dir

# lint (ruff: pyflakes, import order, bugbear; pyproject.toml) then every test: one worker per
# core (pytest-xdist), each test file on one worker (its session fixtures built once), one torch
# thread per worker (two multi-threaded torch processes on the same cores slow each other 10x+)
lint: setup
	$(PY) -m ruff check .

test: lint
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n auto --dist loadfile

bench-throughput: setup
	$(PY) bench/throughput.py

bench-tokenize: setup
	$(PY) bench/tokenize_speed.py

bench-ligo-step: setup
	$(PY) bench/ligo_step.py

clean:
	rm -rf .venv out *.egg-info .ligo-installed-active-env
