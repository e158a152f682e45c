# uatap: build, test and the live-capture test rig (tests/peers/).
#
#   make deps         tshark and chromium (apt), .venv with asyncua and o6 (open62541),
#                     tests/peers/node_modules with node-opcua and playwright-core (renders the
#                     HTML report in a test)
#   make test         cargo test --workspace (integration tests find the peers via the env below),
#                     then cargo deny: licenses, bans and sources of the dependencies (offline)
#   make audit        cargo deny check advisories (needs the RustSec database from the network)
#   make check-windows  the workspace type-checked for x86_64-pc-windows-gnu (MinGW)
#   make demo         release build + analyze a fixture
#   make peers-smoke  live captures for the 4 asyncua/node-opcua pairs, checked with tshark
#   make peers-big    node-opcua server + asyncua client, 2000 items: multi-chunk PublishResponses
#   make peers-secure Basic256Sha256 Sign and SignAndEncrypt captures, OPN policy checked with tshark
#   make soak         load and long runs (1000 connections, 10,000 cycles, SOAK_MINUTES=30 soak)

SHELL := /bin/bash
.DEFAULT_GOAL := test

PYTHON ?= python3
NPM ?= npm
CARGO ?= cargo
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

PEERS := tests/peers
VENV := .venv
VENV_STAMP := $(VENV)/.stamp
NODE_STAMP := $(PEERS)/node_modules/.stamp

# Read by the integration tests and by tests/peers/capture.py.
export UATAP_PEERS_DIR := $(CURDIR)/$(PEERS)
export UATAP_VENV := $(CURDIR)/$(VENV)

# Debian's Chromium renders `uatap analyze --html` in tests/report.rs (driven by playwright-core).
browser:
	@if ! command -v chromium >/dev/null; then \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	fi

.PHONY: all deps tshark browser test demo peers-smoke peers-big peers-secure

all: test

deps: tshark browser $(VENV_STAMP) $(NODE_STAMP) cargo-deny

# cargo-deny checks the dependencies' licenses, bans and sources (deny.toml) in `make test`.
cargo-deny:
	@command -v cargo-deny >/dev/null || $(CARGO) install cargo-deny --locked

# tshark's debconf question (may non-root users capture?) is preseeded so it cannot block.
# tcpdump too: tests/shapes.rs records one session with tshark and tcpdump at once.
tshark:
	@if ! command -v tshark >/dev/null || ! command -v tcpdump >/dev/null; then \
	  echo 'wireshark-common wireshark-common/install-setuid boolean false' | $(SUDO) debconf-set-selections; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q tshark tcpdump; \
	fi

$(VENV_STAMP): $(PEERS)/requirements.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --disable-pip-version-check -q -r $(PEERS)/requirements.txt
	touch $@

# npm ci wipes node_modules (and the stamp) before installing, so the stamp is written after it.
$(NODE_STAMP): $(PEERS)/package.json $(wildcard $(PEERS)/package-lock.json)
	if [ -f $(PEERS)/package-lock.json ]; then \
	  $(NPM) ci --prefix $(PEERS) --no-audit --no-fund; \
	else \
	  $(NPM) install --prefix $(PEERS) --no-audit --no-fund; \
	fi
	touch $@

test: deps
	$(CARGO) test --workspace
	$(CARGO) deny --offline check licenses bans sources

# The RustSec advisory database needs the network: a separate target for machines that have it.
audit:
	$(CARGO) deny check advisories
.PHONY: audit cargo-deny

# Windows portability: the whole workspace (tests and benches too) type-checked for Windows with
# the MinGW toolchain (aws-lc-sys compiles its C with it). Nothing is run: no Windows host here.
check-windows:
	@rustup target list --installed | grep -q x86_64-pc-windows-gnu || rustup target add x86_64-pc-windows-gnu
	@command -v x86_64-w64-mingw32-gcc >/dev/null || { $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q; $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q gcc-mingw-w64-x86-64; }
	CARGO_TARGET_DIR=target/windows $(CARGO) check --workspace --all-targets --target x86_64-pc-windows-gnu
.PHONY: check-windows

demo: deps
	$(CARGO) build --release
	scripts/demo.sh

# Each pair: server:client:port. A capture passes when tshark decodes more than 20 OPC UA frames.
SMOKE_DIR ?= /tmp/uatap-peers-smoke
SMOKE_PAIRS := asyncua:node:48411 node:asyncua:48412 asyncua:asyncua:48413 node:node:48414

peers-smoke: deps
	@mkdir -p $(SMOKE_DIR)
	@for pair in $(SMOKE_PAIRS); do \
	  IFS=: read -r srv cli port <<< "$$pair"; \
	  out=$(SMOKE_DIR)/basic-$$srv-$$cli.pcapng; \
	  $(VENV)/bin/python $(PEERS)/capture.py --server $$srv --client $$cli --mode basic \
	    --port $$port --out $$out || exit 1; \
	  n=$$(tshark -r $$out -d tcp.port==$$port,opcua -Y opcua 2>/dev/null | wc -l); \
	  echo "  $$out: $$n OPC UA frames"; \
	  if [ "$$n" -le 20 ]; then echo "FAIL: too few OPC UA frames in $$out" >&2; exit 1; fi; \
	done

# The capture must hold intermediate (C) MSG chunks, like fixtures/big-publish.pcapng.
peers-big: deps
	@mkdir -p $(SMOKE_DIR)
	@out=$(SMOKE_DIR)/big-node-asyncua.pcapng; port=48417; \
	$(VENV)/bin/python $(PEERS)/capture.py --server node --client asyncua --mode big \
	  --items 2000 --max-notif 100000 --port $$port --out $$out || exit 1; \
	n=$$(tshark -r $$out -d tcp.port==$$port,opcua \
	  -Y 'opcua.transport.type == "MSG" && opcua.transport.chunk == "C"' 2>/dev/null | wc -l); \
	echo "  $$out: $$n MSG/C chunks"; \
	if [ "$$n" -lt 1 ]; then echo "FAIL: no multi-chunk message in $$out" >&2; exit 1; fi

# Fuzzing (cargo-fuzz on stable via RUSTC_BOOTSTRAP): seed the corpora from fixtures/*.pcapng,
# then run each target for FUZZ_SECONDS, one process at a time (no -jobs: that would send the
# output to fuzz-N.log). Crashes land in fuzz/artifacts/<target>/.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= reassembly message chunk connection fault_stream fault_spec capture config admin mitm decrypt redact

.PHONY: fuzz
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz
	RUSTC_BOOTSTRAP=1 $(CARGO) fuzz build
	$(PYTHON) fuzz/seed.py
	@fail=; for t in $(FUZZ_TARGETS); do \
	  echo "== fuzz $$t for $(FUZZ_SECONDS)s"; \
	  RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run $$t fuzz/corpus/$$t -- \
	    -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 || fail="$$fail $$t"; \
	done; \
	if [ -n "$$fail" ]; then echo "FAIL: fuzz targets that crashed:$$fail" >&2; exit 1; fi

# Secured channels: node-opcua server + asyncua client, Basic256Sha256 in mode Sign and in mode
# SignAndEncrypt (certificates generated into $(SECURE_PKI)). Each capture passes when tshark
# shows the Basic256Sha256 policy URI in both OPN chunks and decodes more than 20 OPC UA frames,
# and when secure_check.py verifies every chunk's signature with the peers' keys.
SECURE_PKI ?= $(SMOKE_DIR)/pki
SECURE_RUNS := Sign:48423 SignAndEncrypt:48424
B256SHA256 := http://opcfoundation.org/UA/SecurityPolicy\#Basic256Sha256

peers-secure: deps
	@mkdir -p $(SMOKE_DIR)
	@for run in $(SECURE_RUNS); do \
	  IFS=: read -r mode port <<< "$$run"; \
	  out=$(SMOKE_DIR)/secure-$$mode-node-asyncua.pcapng; \
	  $(VENV)/bin/python $(PEERS)/capture.py --server node --client asyncua --mode basic \
	    --security Basic256Sha256:$$mode --pki $(SECURE_PKI) --port $$port --out $$out || exit 1; \
	  n=$$(tshark -r $$out -d tcp.port==$$port,opcua -Y opcua 2>/dev/null | wc -l); \
	  opn=$$(tshark -r $$out -d tcp.port==$$port,opcua -Y 'opcua.transport.type == "OPN"' \
	    -T fields -e opcua.security.spu 2>/dev/null | sort | uniq -c | xargs); \
	  echo "  $$out: $$n OPC UA frames, OPN policy: $$opn"; \
	  if [ "$$n" -le 20 ]; then echo "FAIL: too few OPC UA frames in $$out" >&2; exit 1; fi; \
	  if [ "$$opn" != "2 $(B256SHA256)" ]; then echo "FAIL: OPN policy is not Basic256Sha256 in $$out" >&2; exit 1; fi; \
	  $(VENV)/bin/python $(PEERS)/secure_check.py $$out $$port --pki $(SECURE_PKI) | sed 's/^/    /' || exit 1; \
	done

# End-to-end: uatap analyze --json vs tshark on a ~72 MB synthetic Publish capture (generated once
# under target/bench-data/). Result table: target/bench-data/analyze_vs_tshark.txt. ARGS e.g. --rounds 5.
bench-analyze:
	$(PYTHON) benches/analyze_vs_tshark.py $(ARGS)
.PHONY: bench-analyze

# End-to-end: uatap proxy against a plain tokio copy_bidirectional forwarder on loopback, with the
# synthetic OPC UA client/server of benches/e2e (PublishResponse stream MB/s, 100-connection Read
# ping-pong p99, memory per idle connection), rounds interleaved. Result table:
# benches/e2e/target/e2e-results.txt. ARGS e.g. --rounds 7, --no-aa, --workloads stream.
bench-proxy:
	$(CARGO) build --release --bin uatap
	$(PYTHON) benches/e2e/run.py $(ARGS)
.PHONY: bench-proxy

# Load and long runs (issue #10): 1000 concurrent Publish connections through one proxy, 10,000
# open/close cycles, then SOAK_MINUTES of paced Publish traffic recorded into a rotating ring
# buffer; checks RSS flat, descriptors back to baseline, events and recorded bytes equal to what the
# peers sent. Loopback only; each phase stops by itself. Results: $(SOAK_OUT)/results.{txt,json}.
# ARGS e.g. --phases soak, --conns 500. The short versions run in `make test` (tests/load.rs).
SOAK_MINUTES ?= 30
SOAK_OUT ?= target/soak
soak:
	$(CARGO) build --release --bin uatap
	$(CARGO) build --release --manifest-path benches/e2e/Cargo.toml
	$(PYTHON) benches/soak/run.py --minutes $(SOAK_MINUTES) --out $(SOAK_OUT) $(ARGS)
.PHONY: soak

bench-mitm:
	$(CARGO) bench --bench mitm
.PHONY: bench-mitm
