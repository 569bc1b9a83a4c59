# vmbuild: the two commands a newcomer needs are `make demo` and `make test`.
PY := .venv/bin/python
AGENT := dist/vmbuild-agent.pyz

.PHONY: setup agent demo test test-unit test-integration lint bench clean

setup: ## install system packages, start libvirtd, create .venv
	bash scripts/setup-host.sh

agent: $(AGENT) ## build the guest agent zipapp

$(AGENT): $(shell find guest-agent -name '*.py' 2>/dev/null)
	$(PY) guest-agent/build.py --output $(AGENT)

demo: setup agent ## bootstrap a Debian 12 base image and run images/recipes/demo.yml end to end
	$(PY) -m vmbuild.cli run images/recipes/demo.yml

test: setup agent ## set up and run every test (unit and integration, real VMs under TCG)
	$(PY) -m pytest -v

test-unit: setup agent
	$(PY) -m pytest -v -m "not integration"

lint:
	$(PY) -m ruff check vmbuild guest-agent tests benchmarks
	$(PY) -m ruff format --check vmbuild guest-agent tests benchmarks

bench: setup agent ## run the benchmarks; results land in benchmarks/results/
	$(PY) benchmarks/run_all.py

clean:
	rm -rf dist build .pytest_cache
