# The template's own tooling. On a fresh machine with Python 3.11+ and make:
#   make demo   bake the default spam system into build/ and run it end to end
#   make test   run the template tests (bake, lint and run generated projects)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Bytecode compiled at install: where .pyc files are not written (PYTHONDONTWRITEBYTECODE, a
# read-only venv) every process would compile the libraries' sources again (seconds each).
UV := $(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python
DEMO_SLUG := spam-detection
TEMPLATE_DIR := {{cookiecutter.project_slug}}

.DEFAULT_GOAL := help
.PHONY: help install lint test demo bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

install: $(VENV)/.installed $(BIN)/kubectl ## Create or update .venv with the template tooling and the generated system's stack

# The pinned kubectl the generated `deploy check` renders with (the template tests run generated
# suites with this venv); the generated package's own fetcher, stdlib only, run as a script.
$(BIN)/kubectl: $(VENV)/.installed
	$(BIN)/python "$(TEMPLATE_DIR)/src/{{cookiecutter.package_name}}/deploy/kubectl.py" $(BIN)

# The generated system's dependencies are read from its own pyproject.toml (baked with the
# defaults), so the versions the template tests run with are exactly the ones a user gets.
$(VENV)/.installed: pyproject.toml $(TEMPLATE_DIR)/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python 3.11+ is required ($(PYTHON) is $$($(PYTHON) -V))"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv
	$(UV) -r pyproject.toml --extra dev
	rm -rf build/.deps && $(BIN)/cookiecutter --no-input --output-dir build/.deps .
	$(UV) -r build/.deps/$(DEMO_SLUG)/pyproject.toml --extra dev
	rm -rf build/.deps
	touch $@

# The template's own Python, named: from `.` ruff also reads the template's pyproject.toml,
# which is Jinja until baked (the template tests lint each bake).
LINTED := hooks scripts tests

lint: install ## ruff over the hooks, scripts and template tests
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

test: install ## Run the template tests
	$(BIN)/python -m pytest

demo: install ## Bake the default project into build/ and run every stage end to end
	rm -rf build/$(DEMO_SLUG)
	$(BIN)/cookiecutter --no-input --output-dir build .
	$(MAKE) -C build/$(DEMO_SLUG) install VENV=$(abspath $(VENV))
	$(MAKE) -C build/$(DEMO_SLUG) demo VENV=$(abspath $(VENV))

bench: install ## Time a bake and the generated project's test suite
	$(BIN)/python scripts/bench_template.py

clean: ## Remove build/ (keeps .venv)
	rm -rf build
