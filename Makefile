# DemoFab: `make demo` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3.11
export COLUMNS ?= 140
VENV := .venv
STAMP := $(VENV)/.installed
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	bash tools/system-deps.sh
	$(BIN)/python -m pip install -q -e '.[test,dds,sim,ray,vault,view]'
	touch $(STAMP)

demo: $(STAMP)
	rm -rf demo-output
	$(BIN)/demofab record --source sim --task pick_place --episodes 3 --seed 1 \
		--operator demo --out demo-output/session
	$(BIN)/demofab inspect demo-output/session
	$(BIN)/demofab sim multiply --source demo-output/session --task pick_place --n 4 \
		--seed 2 --workers 2 --out demo-output/multiplied
	$(BIN)/demofab curate demo-output/session demo-output/multiplied --out demo-output/releases \
		--name demo
	$(BIN)/demofab release show demo-output/releases/demo
	$(BIN)/demofab release sample demo-output/releases/demo -n 3
	BIN=$(BIN) bash tools/demo-vault.sh
	@echo
	@echo "Look at the demo release, label and flag its episodes (then open http://127.0.0.1:8780/):"
	@echo "  $(BIN)/demofab review demo-output/releases/demo"

test: $(STAMP)
	bash tools/run-tests.sh

lint: $(STAMP)
	$(BIN)/ruff check .; rc=$$?; $(BIN)/mypy && exit $$rc

clean:
	rm -rf $(VENV) demo-output .pytest_cache
