VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

export HF_HUB_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: demo test lint bench clean

$(PY):
	python3 -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml constraints.txt
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/runner validate specs/*.yaml
	$(VENV)/bin/runner run specs/quickstart-text.yaml --out runs
	$(VENV)/bin/runner run specs/quickstart-image.yaml --out runs

test: lint
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check runner tests benchmarks
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) benchmarks/bench_validate.py
	$(PY) benchmarks/bench_run.py
	$(PY) benchmarks/bench_hashing.py
	$(PY) benchmarks/bench_memory.py
	$(PY) benchmarks/bench_many.py

clean:
	rm -rf $(VENV) runs
