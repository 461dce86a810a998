PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
IMAGES_STAMP := $(VENV)/.images-stamp
PROTOS := $(wildcard proto/aiges/protocol/*.proto)

.PHONY: install helm test cluster-test cluster-clean serve proto lint bench gpu-check c-example asan-check clean \
	image image-gpu image-test

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
	$(VENV)/bin/ruff format --check aiges tests demo wrappers bench
	$(VENV)/bin/ruff check aiges tests demo wrappers bench
	$(VENV)/bin/mypy  # strict over aiges/ ([tool.mypy] in pyproject.toml)
	$(VENV)/bin/mypy --config-file tests/mypy.ini --check-untyped-defs tests

bench: install
	@command -v h2load >/dev/null || (apt-get install -y -q nghttp2-client || (apt-get update -q && apt-get install -y -q nghttp2-client))
	@# PyTriton's venv is made on Debian's python3 (see bench/run.py), which needs its venv module.
	@test ! -x /usr/bin/python3 || /usr/bin/python3 -c 'import ensurepip' 2>/dev/null || apt-get install -y -q python3-venv
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	$(PY) bench/run.py
	{ echo; echo '## Batching, worker scaling, sessions, fronts'; echo; echo '```'; \
	  $(PY) bench/batching.py && $(PY) bench/scaling.py && $(PY) bench/sessions.py && $(PY) bench/fronts.py \
	  && $(PY) bench/multi_front.py && $(PY) bench/services.py; echo '```'; } >> bench/RESULTS.md
	{ echo; echo '## Payload copies: peak memory of one 48 MiB call, cost of packing the hot messages'; echo; echo '```'; \
	  $(PY) bench/peak_rss.py && $(PY) bench/packing.py; echo '```'; } >> bench/RESULTS.md
	@# Overload side by side (issue 25): aiges, MLServer, PyTriton at 0.5C, 1.5C, 3C; replaces its own section.
	$(PY) bench/overload.py

# Images. ENGINE: docker when its daemon answers, else podman, else buildah. podman and buildah
# build in the docker format, which keeps the HEALTHCHECK (the OCI format has none).
# BASE_IMAGE (optional) replaces the Dockerfile's FROM; BUILD_FLAGS are passed on as they are.
ENGINE ?= $(shell if docker info >/dev/null 2>&1; then echo docker; \
	elif command -v podman >/dev/null 2>&1; then echo podman; \
	elif command -v buildah >/dev/null 2>&1; then echo buildah; fi)
IMAGE ?= aiges/aiges:0.1.0-cpu
GPU_IMAGE ?= aiges/aiges:0.1.0-gpu
BASE_IMAGE ?=
BUILD_FLAGS ?=
BUILD = $(ENGINE) build $(if $(filter docker,$(ENGINE)),,--format docker) \
	$(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE)) $(BUILD_FLAGS)

image:
	@test -n "$(ENGINE)" || { echo "make image: no docker daemon, podman or buildah found" >&2; exit 1; }
	$(BUILD) -f docker/cpu/Dockerfile -t $(IMAGE) .

image-gpu:
	@test -n "$(ENGINE)" || { echo "make image-gpu: no docker daemon, podman or buildah found" >&2; exit 1; }
	$(BUILD) -f docker/gpu/Dockerfile -t $(GPU_IMAGE) .

$(IMAGES_STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev,images]'
	touch $(IMAGES_STAMP)

# Builds the stand-in bases (once per machine), the CPU, business and GPU images, and runs them
# with podman, and the compose stack with podman-compose (tests/images; needs root).
image-test: $(IMAGES_STAMP)
	$(PY) -m pytest -v tests/images --timeout 1200

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache

gpu-check: install
	scripts/gpu_check.sh

c-example:
	$(MAKE) -C wrappers/c/example

asan-check: install
	scripts/asan_check.sh
