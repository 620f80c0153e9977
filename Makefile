# The two commands a new user needs are `make demo` and `make test` (see README.md).
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test deps venv lint unit molecule bench soak mttr alert-mttr lab-up lab-down lab-status

demo: deps venv
	scripts/demo.sh

test: deps venv lint unit molecule

deps:
	scripts/install-system-deps.sh

venv:
	scripts/bootstrap-venv.sh

lint: venv
	$(BIN)/ruff check .
	$(BIN)/yamllint --strict .
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/ansible-lint --profile production
	scripts/sanity.sh  # ansible-test sanity on the quantum.redis_streams collection

unit: venv
	scripts/run-pytest.sh  # full suite on Redis 7.0.15, then the server tests on Redis 8.0.2 and Valkey 8.1.1

molecule: deps venv
	scripts/run-molecule.sh

bench: deps venv
	$(BIN)/python bench/reclaim_bench.py

# Not part of `make test`: 100 incident-and-recover cycles at 5,000 entries/s (about 2 h 20 min
# on 2 cores at load ~4); its own container qt-soak, Redis on 6380 (QT_LAB_CONTAINER,
# QT_LAB_REDIS_PORT).
# SOAK_ARGS="--cycles 3 --rate 500" for a quick trial. See docs/benchmarks.md, "Soak".
soak: deps venv
	$(BIN)/python bench/soak.py $(SOAK_ARGS)

# Not part of `make test`: time to recover, recover.yml against the seed runbook
# (../shared/bench/seed-runbook.sh) on the lab incident, 3 pairs at W=10 s and at W=60 s, then
# recover.yml's healthy no-op; its own container qt-mttr, Redis on 6393 (QT_LAB_CONTAINER,
# QT_LAB_REDIS_PORT). MTTR_ARGS="--pairs 1 --windows 10 --skip-noop" for a quick trial. See
# docs/benchmarks.md, "Time to recover".
mttr: deps venv
	$(BIN)/python bench/mttr.py $(MTTR_ARGS)

# Not part of `make test`: hang to alert-driven healing through the real chain (Prometheus,
# Alertmanager, ansible-rulebook; lab/alerting_stack.py), 5 trials on its own container
# qt-alert-mttr, Redis on 6494 (QT_LAB_CONTAINER, QT_LAB_REDIS_PORT); about 5 minutes.
# ALERT_MTTR_ARGS="--trials 1" for a quick trial. See docs/benchmarks.md, "Alert to healing".
alert-mttr: deps venv
	$(BIN)/python bench/alert_mttr.py $(ALERT_MTTR_ARGS)

lab-up: deps venv
	lab/lab.sh up

lab-down:
	lab/lab.sh down

lab-status:
	lab/lab.sh status
