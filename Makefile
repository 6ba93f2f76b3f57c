# podledger: the README's two commands are `make demo` and `make test`.
.PHONY: demo test lint bench-clean

demo:
	./scripts/bootstrap.sh
	.venv/bin/podledger demo

test:
	./scripts/bootstrap.sh --dev
	.venv/bin/python -m pytest -q

lint:
	./scripts/bootstrap.sh --dev
	.venv/bin/ruff check include plugins dags tests bench
