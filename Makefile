# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup demo lint test test-fast lab serve stop bench clean

setup:  ## create .venv with every pinned dependency (skipped when up to date); Chromium for the report check
	$(PYTHON) -m kit.venv
	@# the notebooks' kernel, inside .venv, for Jupyter tools started from it (papermill, nbconvert, editors)
	@$(PY) -m ipykernel install --sys-prefix --name triton-vllm-kit --display-name "Python (triton-vllm-kit)" >/dev/null
	@command -v chromium-headless-shell >/dev/null || command -v chromium >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium-headless-shell \
	     || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	         apt-get install -y -qq --no-install-recommends chromium-headless-shell)) >/dev/null; } || \
	  echo "note: no Chromium (apt-get install chromium-headless-shell): the reports' browser check is skipped"

demo: setup  ## build, serve, exercise the guardrails, benchmark, and write reports/
	$(PY) -m kit demo

lint: setup  ## ruff, configured in pyproject.toml
	$(PY) -m ruff check .

test: setup lint  ## ruff, then the whole test suite (unit, integration on a real server, notebooks)
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup  ## unit tests only
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

lab: setup  ## JupyterLab on notebooks/ with the project's kernel (as root too); LAB_ARGS="--no-browser --port=8899"
	$(PY) -m kit.notebooks.lab $(LAB_ARGS)

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
