PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PROTOS := $(wildcard proto/aiges/protocol/*.proto)

.PHONY: install helm test cluster-test cluster-clean serve proto lint bench gpu-check c-example asan-check clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,demos,embedding,python-wrapper]'
	touch $(STAMP)

helm: install
	scripts/install_helm.sh

test: install
	$(PY) -m pytest -q

# Four aiges hosts, a 3-member etcd and a client in network namespaces, under load, with faults
# (tests/cluster; root; a few minutes). Whatever happens, no aiges-cl-* namespace is left behind.
cluster-test: install
	$(PY) -m pip install --quiet -e '.[dev,cluster]'
	$(PY) -m pytest tests/cluster -s -v -p no:cacheprovider; status=$$?; $(PY) tests/cluster/netns.py; exit $$status

cluster-clean:
	$(PYTHON) tests/cluster/netns.py --all

serve: install
	$(VENV)/bin/aiges serve -c aiges.toml

proto: install
	$(PY) -m grpc_tools.protoc -I proto --python_out=. --pyi_out=. --grpc_python_out=. $(PROTOS)

lint: install
	$(VENV)/bin/ruff check aiges tests demo wrappers bench

bench: install
	@command -v h2load >/dev/null || (apt-get install -y -q nghttp2-client || (apt-get update -q && apt-get install -y -q nghttp2-client))
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	$(PY) bench/run.py
	{ echo; echo '## Batching, worker scaling, sessions, fronts'; echo; echo '```'; \
	  $(PY) bench/batching.py && $(PY) bench/scaling.py && $(PY) bench/sessions.py && $(PY) bench/fronts.py; echo '```'; } >> bench/RESULTS.md

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache

gpu-check: install
	scripts/gpu_check.sh

c-example:
	$(MAKE) -C wrappers/c/example

asan-check: install
	scripts/asan_check.sh
