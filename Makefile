# Every target builds what it needs from nothing: a venv, maturin, the Python dependencies and
# the extension (release mode).
VENV ?= .venv
PY := $(VENV)/bin/python
MATURIN := VIRTUAL_ENV=$(abspath $(VENV)) $(VENV)/bin/maturin

.PHONY: demo demo-checkpointer test test-rust test-py test-servers bench dev lint format clean

$(VENV)/bin/maturin:
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "maturin>=1.7,<2"

# Build the extension in release mode and install it, with the test dependencies, into the venv.
dev: $(VENV)/bin/maturin
	$(MATURIN) develop --release --quiet --extras test

# The headline demo: a research agent, stock against accelerated (fast_langgraph.profiler.compare);
# prints the table and writes report.html.
demo: dev
	$(PY) examples/agent_demo.py --html report.html

demo-checkpointer: dev
	$(PY) examples/checkpointer_demo.py

test-rust:
	cargo test --no-default-features

# The servers the tests start for themselves (redis-server, PostgreSQL), installed with apt-get
# when missing; each test session starts its own throwaway instances on loopback and stops them.
test-servers:
	bash scripts/install-test-servers.sh

test-py: dev test-servers
	$(PY) -m pytest -q

test: test-rust test-py

bench: dev test-servers
	$(PY) benches/bench_checkpoint.py
	$(PY) benches/bench_e2e_product.py
	$(PY) benches/bench_merge.py
	$(PY) benches/bench_cache.py
	$(PY) benches/bench_shim.py
	$(PY) benches/bench_serde.py
	$(PY) benches/bench_longchat.py
	$(PY) benches/bench_postgres.py
	$(PY) benches/bench_postgres_collation.py
	$(PY) -m pytest benches -q --benchmark-enable

lint: dev
	cargo clippy --all-targets -- -D warnings
	cargo fmt --check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/python -m mypy.stubtest fast_langgraph._native --allowlist stubtest-allowlist.txt

format: dev
	cargo fmt
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) target
