# Two commands do all the set-up on a fresh machine:
#   make run    - runs the default scenario (quickstart)
#   make test   - ruff, mypy and the test suite
PY := .venv/bin/python

.PHONY: setup run test lint bench clean
setup:
	@bash scripts/bootstrap.sh

run: setup
	$(PY) run_sim.py $(ARGS)

lint: setup
	$(PY) -m ruff check .
	MYPY="$(CURDIR)/.venv/bin/mypy" bash scripts/typecheck.sh

test: lint
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	$(PY) benchmarks/codecs.py
	$(PY) benchmarks/simulator.py

clean:
	rm -rf .venv build .pytest_cache .mypy_cache .ruff_cache
