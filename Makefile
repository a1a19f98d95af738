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

.PHONY: setup quickstart test bench-throughput bench-tokenize bench-ligo-step clean

setup: $(STAMP)

$(STAMP): setup.cfg pyproject.toml scripts/setup.sh
	bash scripts/setup.sh
	touch $@

# pretrain a small BERT on the embedded default corpus (BBC News), a few minutes on 2 cores
quickstart: setup
	$(PY) run_lm_distributed.py --config configs/bert_wiki.txt \
		--config_name configs/bert-3L-256H.json --output_dir $(QUICKSTART_DIR) \
		--max_steps 300 --eval_steps 100 --overwrite_output_dir

test: setup
	$(PY) -m pytest -q

bench-throughput: setup
	$(PY) bench/throughput.py

bench-tokenize: setup
	$(PY) bench/tokenize_speed.py

bench-ligo-step: setup
	$(PY) bench/ligo_step.py

clean:
	rm -rf .venv out *.egg-info .ligo-installed-active-env
