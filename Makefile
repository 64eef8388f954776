# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup demo test test-fast lab serve stop bench clean

setup:  ## create .venv with every pinned dependency (skipped when up to date)
	$(PYTHON) -m kit.venv

demo: setup  ## build, serve, exercise the guardrails, benchmark, and write reports/
	$(PY) -m kit demo

test: setup  ## the whole test suite (unit, integration on a real server, notebooks)
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup  ## unit tests only
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

lab: setup  ## JupyterLab on notebooks/ with the project's kernel
	$(PY) -m ipykernel install --user --name triton-vllm-kit --display-name "Python (triton-vllm-kit)"
	$(PY) -m jupyterlab notebooks/

serve: setup
	$(PY) -m kit serve --detach

stop:
	$(PY) -m kit stop

bench: setup  ## direct vs pipeline vs blocking; then the kit vs `vllm serve` (vLLM's own benchmark client)
	$(PY) -m kit bench --quick
	$(PY) -m kit bench --vs-vllm-serve

clean:
	-$(PY) -m kit stop
	rm -rf build reports .kit
