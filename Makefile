# podledger: the README's two commands are `make demo` and `make test`.
.PHONY: demo test lint bench-clean

# DEMO_ARGS: extra arguments for `podledger-lab demo` (CI runs a shorter window: DEMO_ARGS="--hours 2").
DEMO_ARGS ?=

demo:
	./scripts/bootstrap.sh --demo
	.venv/bin/podledger-lab demo $(DEMO_ARGS)

test:
	./scripts/bootstrap.sh --dev
	.venv/bin/python -m pytest -q

lint:
	./scripts/bootstrap.sh --dev
	.venv/bin/ruff check include plugins dags tests bench
	.venv/bin/mypy include/podledger plugins/podledger_airflow
