VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The YAML language server editors run, for tests/process/test_editor.py; pinned, local, ignored.
YAML_LANGUAGE_SERVER := yaml-language-server@1.25.0
EDITOR_STAMP := .node/.$(YAML_LANGUAGE_SERVER)

export HF_HUB_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: demo test lint editor bench clean chromium schema

$(PY):
	python3 -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml constraints.txt
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

# The report page is tested in a real browser: Debian's chromium, driven by playwright.
# For `make test` alone (a demo installs nothing outside .venv): installed when we may
# (root with apt-get); otherwise the browser tests skip and say why.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } || \
	  echo "no chromium: the report page's browser tests will skip"

demo: $(STAMP)
	$(VENV)/bin/runner validate specs/*.yaml
	$(VENV)/bin/runner run specs/quickstart-text.yaml --out runs
	$(VENV)/bin/runner run specs/quickstart-image.yaml --out runs
	$(VENV)/bin/runner run specs/quickstart-compare.yaml --out runs
	$(VENV)/bin/runner run specs/quickstart-score.yaml --out runs
	$(VENV)/bin/runner run specs/quickstart-train.yaml --out runs
	$(VENV)/bin/runner scores $$(ls -d runs/quickstart-score-* | tail -1)

# Every tier: tests/unit, tests/models, tests/process (README, "Tests").
test: lint editor chromium
	$(PY) -m pytest -q

# Never fails the build: without npm (or the registry) the editor tests skip, saying why.
editor:
	@if [ -f $(EDITOR_STAMP) ]; then :; \
	elif command -v npm >/dev/null 2>&1 && npm install --prefix .node --no-save \
		--no-package-lock --no-audit --no-fund --silent $(YAML_LANGUAGE_SERVER); then \
		touch $(EDITOR_STAMP); \
	else echo "$(YAML_LANGUAGE_SERVER) not installed (npm missing or failed): tests/process/test_editor.py will skip"; fi

# The schema file editors read, generated from the spec vocabulary (runner/spec/vocabulary.py).
schema: $(STAMP)
	$(VENV)/bin/runner schema > schemas/spec.schema.json
	$(VENV)/bin/python -c "from runner.backends.scheduling import scheduler_keys_source as s; \
	  print(s(), end='')" > runner/spec/scheduler_keys.py
	$(VENV)/bin/ruff format -q runner/spec/scheduler_keys.py

lint: $(STAMP)
	$(VENV)/bin/ruff check runner tests benchmarks
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) benchmarks/bench_validate.py
	$(PY) benchmarks/bench_run.py
	$(PY) benchmarks/bench_hashing.py
	$(PY) benchmarks/bench_memory.py
	$(PY) benchmarks/bench_many.py
	$(PY) benchmarks/bench_score.py

clean:
	rm -rf $(VENV) runs .node
