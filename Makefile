# The two commands a newcomer runs (README): `make run` and `make test`.
# Both create or refresh .venv from constraints.txt first.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.segflow-installed
RUN_DIR ?= out
comma := ,

.PHONY: venv run test bench lock clean images image-tag

# Debian packages, each named as CHECK[:PACKAGE], CHECK a command or a file that the package
# provides: swig builds pyrfr (SMAC3's random forest); Java runs TorchServe; prometheus gives
# promtool and a server the serving tests scrape with; chromium drives the web page; containerd,
# runc, the CNI plugins, iptables and gcc (Kubernetes' pause.c) make the tests' single-node
# cluster; podman, mmdebstrap and skopeo build and export the images.
# Installed with apt when running as root; otherwise named with the command to run, and the
# build stops (for required ones) or the tests that need them skip saying why (SEGFLOW_REQUIRE_REAL=1
# turns those skips into failures).
define debian_packages
	@missing=""; for item in $(1); do check=$${item%%:*}; package=$${item#*:}; \
	  { [ -e "$$check" ] || command -v "$$check" >/dev/null 2>&1; } || missing="$$missing $$package"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian packages:$$missing"; apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "missing:$$missing; install them, e.g. sudo apt-get install$$missing"; $(2); fi; \
	fi
endef
NODE_PACKAGES := containerd runc /usr/lib/cni/bridge:containernetworking-plugins iptables gcc /usr/lib/x86_64-linux-gnu/libc.a:libc6-dev
IMAGE_PACKAGES := podman mmdebstrap skopeo
TEST_PACKAGES := java:openjdk-17-jre-headless prometheus chromium $(NODE_PACKAGES) $(IMAGE_PACKAGES)

venv: $(STAMP)

$(STAMP): pyproject.toml setup.py constraints.txt scripts/install.sh
	$(call debian_packages,swig,exit 1)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	scripts/install.sh $(BIN)/python all,dev
	@touch $@

# The main job: the train_and_serve pipeline on the embedded synthetic set, through kfp.local:
# prep, training on 2 Ray workers, evaluation and report, and a TorchServe archive.
run: venv
	$(BIN)/segflow run quickstart --run-dir $(RUN_DIR)/quickstart

# The servers and the single-node cluster the tests run for real (MinIO, Kubernetes, CoreDNS,
# prometheus-operator, Prometheus, helm, the KubeRay operator) are built from their Go modules into
# ~/.cache/segflow: only the first run builds (about 22 min of CPU), so it runs beside the venv's install,
# which mostly waits on downloads; without Go the pinned toolchain comes from the Go module proxy.
# Then the serving image the cluster runs (tools/imagebuild, cached by its tag; --no-write: a stale
# recorded tag fails its test instead of being rewritten); a build that fails is reported by the
# tests that need it.
test:
	$(call debian_packages,$(TEST_PACKAGES),true)
	@mkdir -p $(RUN_DIR); echo "building the Go servers in the background (log: $(RUN_DIR)/gobuild.log)"; \
	PYTHONPATH=tests $(PYTHON) -m support.gobuild > $(RUN_DIR)/gobuild.log 2>&1 & builds=$$!; \
	$(MAKE) --no-print-directory venv; installed=$$?; wait $$builds; cat $(RUN_DIR)/gobuild.log; \
	[ $$installed = 0 ]
	# both images (the chart's pods; the pipeline steps, RayJobs and --runner docker): the node tests load them
	PYTHONPATH=tools $(BIN)/python -m imagebuild build --no-write || true
	$(BIN)/python -m pytest

# Benchmarks (commands, never timed tests): each writes docs/results/NAME.json and regenerates
# docs/benchmarks.md. About 3 hours on 2 CPU cores in the reduced modes the scripts describe
# (2026-11-22: quality 57 min, search 70 min for its table + 15 min ASHA vs random, the rest 25 min);
# BENCH=training,quality runs a subset; BENCH_ARGS_search='--algos ""' keeps the last table.
BENCH ?= training quality serving compression search pipeline
BENCH_ARGS_compression = --nas
BENCH_ARGS_search = --set data.num_images=160
bench: venv
	$(foreach name,$(subst $(comma), ,$(BENCH)),$(BIN)/python bench/$(name).py $(BENCH_ARGS_$(name)) &&) true
	$(BIN)/python bench/report.py > /dev/null

# The two images (docker/*.Dockerfile) without a Docker daemon or a registry: Debian bases made by
# mmdebstrap, built by podman, saved as docker-archives under ~/.cache/segflow/images/archives
# (SEGFLOW_IMAGE_CACHE moves it); tools/imagebuild, docs/deploy.md "Images". The tag derives from
# the inputs: image-tag (seconds, no build) records it in components/images.py, k8s/ and the compiled
# pipelines, and images does so first. 2 cores: 7.7 min cold, 1.4 min after a source change, 0.15 s
# when nothing changed; about 26 GB of disk in the cache.
images: venv
	$(call debian_packages,runc $(IMAGE_PACKAGES),exit 1)
	PYTHONPATH=tools $(BIN)/python -m imagebuild build

image-tag: venv
	PYTHONPATH=tools $(BIN)/python -m imagebuild tag --write

# Re-resolve constraints.in + the extras into the full lock, in a throw-away venv.
lock:
	$(call debian_packages,swig,exit 1)
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet -c constraints.in -e ".[all,dev]"
	{ echo "# Generated by \`make lock\` from constraints.in + pyproject.toml extras [all,dev]; do not edit."; \
	  echo "# torch keeps PyPI's build: the +cpu wheel some machines offer breaks torchvision's operators."; \
	  .lock-venv/bin/python -m pip freeze --all --exclude-editable | grep -vE '^(pip|segflow)==' \
	  | sed -E 's/^torch==([^,]+)$$/torch==\1,!=\1+cpu/'; } > constraints.txt
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) $(RUN_DIR) .pytest_cache
