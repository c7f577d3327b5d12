# coordd — see README.md.
GO        ?= go
BIN       := bin
# GOBUILD stamps the binaries with the VCS revision when built from a git
# checkout (coordd version prints it), whatever GOFLAGS=-buildvcs=... says;
# from a tarball it stamps nothing and does not fail.
GOBUILD   = $(GO) build -buildvcs=auto
TEST_TIMEOUT ?= 14m

.PHONY: all build run run-tls test test-tools test-docs test-e2e test-crash test-ui test-alerts jepsen jepsen-long jepsen-disk bench-e2e bench-recovery bench-stall bench-churn bench bench-quick bench-micro fuzz vet fmt clean bench-txn test-digests bench-digests bench-sessions bench-scale

all: build

build:
	$(GOBUILD) -o $(BIN)/coordd ./cmd/coordd
	$(GOBUILD) -o $(BIN)/coordctl ./cmd/coordctl

## run: build and start a local 3-node cluster (HTTP 7101-7103, Raft 7201-7203, data in ./data; NODES=1 for one node); Ctrl-C or SIGTERM stops every node
# exec: make passes its SIGTERM to its child, which must be the script.
run: build
	exec env COORDD=$(BIN)/coordd ./scripts/run-cluster.sh

# RUN_TLS_FLAGS adds coordd flags to every node of make run-tls.
RUN_TLS_FLAGS ?=

## run-tls: like run, secured: TLS (certificates made once by `coordd certs` in ./data-tls/tls, mutual TLS on Raft, https on 7101-7103) and ACLs (management secret in ./data-tls/management.token); data in ./data-tls
run-tls: build
	exec env COORDD=$(BIN)/coordd TLS=1 ACL=1 DATA_DIR=./data-tls EXTRA_FLAGS="$(RUN_TLS_FLAGS)" ./scripts/run-cluster.sh

## test: vet, then every test with the race detector (end-to-end process tests included), then the fault-injection quick set (make jepsen)
test: vet test-tools
	$(GO) test -race -timeout $(TEST_TIMEOUT) $$($(GO) list ./... | grep -v '/test/jepsen$$')
	$(MAKE) jepsen

## test-tools: install what some tests need when it is missing, as root with apt-get: promtool (Debian's prometheus package; the metrics test), jq and curl (the README's tour); else the tests that need them skip and say why
test-tools:
	$(call apt_install,promtool,prometheus)
	$(call apt_install,jq,jq)
	$(call apt_install,curl,curl)

# SEED=N reproduces a fault-injection run (every run prints its seed).
JEPSEN_FLAGS = $(if $(SEED),-seed $(SEED))

## jepsen: the fault-injection quick set: real coordd processes (built with the race detector) under seeded kills, pauses, partitions, slow and lossy links and lease clock faults, with checked histories (SEED=N to reproduce)
jepsen:
	$(GO) test -count=1 -timeout 10m -run 'TestJepsen' -v ./test/jepsen/ $(JEPSEN_FLAGS)

## jepsen-long: the same scenarios on 5 nodes with three times as many rounds, majorities ring and full disks included (SEED=N to reproduce; not part of make test)
jepsen-long:
	$(GO) test -count=1 -timeout 45m -run 'TestJepsen' -v ./test/jepsen/ -long -jepsen.disk $(JEPSEN_FLAGS)

## jepsen-disk: only the full-disk scenarios: each node's data dir on a 128 MiB tmpfs, one filled until ENOSPC (root; skipped with the reason otherwise)
jepsen-disk:
	$(GO) test -count=1 -timeout 10m -run 'TestJepsen_FullDisk' -v ./test/jepsen/ -jepsen.disk $(JEPSEN_FLAGS)

## test-docs: only the docs tests: the README's tour against a dev node and make run's cluster, its Go example compiled, every relative link and anchor of README.md, docs/ and the examples resolved (part of make test)
test-docs: test-tools
	$(GO) test -count=1 -timeout 5m -run 'Test_Docs' -v ./test/e2e/

## test-e2e: only the end-to-end tests that start real coordd processes
test-e2e:
	$(GO) test -race -timeout $(TEST_TIMEOUT) -run 'Test_E2E' -v ./test/e2e/...

# apt_install installs Debian's package $(2) when command $(1) is missing
# (as root, after apt-get update), and says why when it cannot; the target
# that needs it then skips with a printed reason.
define apt_install
	@command -v $(1) >/dev/null 2>&1 || { \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "$(1) is missing: installing Debian's $(2)"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(2); } >/dev/null 2>&1 \
			|| echo "could not install Debian's $(2) (no package mirror?)"; \
	else echo "$(1) is missing and cannot be installed here (needs root and apt-get)"; fi; }
endef

# UI_OUT is where make test-ui leaves its screenshots (under _artifacts/).
UI_OUT ?= test-output/ui

## test-ui: the web console (/ui/) in headless Chromium (chromedp) against real 3-node clusters: leader, election token, lease countdown, SIGKILL of the leader (prints the time until the page names the new one), a hand-off in the feed, and a TLS+ACL cluster; screenshots under $(UI_OUT); installs Debian's chromium if missing, or skips with the reason (not part of make test)
test-ui:
	$(call apt_install,chromium,chromium fonts-dejavu-core)
	@mkdir -p $(UI_OUT)
	COORDD_UI_TEST=1 $(GO) test -count=1 -timeout 10m -run 'Test_UI_' -v ./test/e2e/ -artifacts -outputdir $(abspath $(UI_OUT))

## test-alerts: promtool checks and unit tests of the alert rules (deploy/prometheus/), the dashboard's queries, and that every metric they read is on a real node's /metrics; installs Debian's prometheus (for promtool) if missing, or skips the promtool part with the reason
test-alerts:
	$(call apt_install,promtool,prometheus)
	@if command -v promtool >/dev/null 2>&1; then \
		promtool check rules deploy/prometheus/alerts.yml && promtool test rules deploy/prometheus/alerts_test.yml; \
	else echo "skipping promtool: it is not installed (Debian's prometheus package has it)"; fi
	$(GO) test -count=1 -timeout 5m -run 'TestMonitoring_|Test_E2E_Monitoring_' -v ./test/e2e/

## test-digests: the state digest end-to-end test at full size: a 3-node cluster and a shadow keep equal digests over 100k mixed entries with snapshots, a restart and a leader SIGKILL (not part of make test, which writes 3k)
test-digests:
	COORDD_DIGEST_ENTRIES=100000 $(GO) test -count=1 -timeout 40m -run 'Test_E2E_Digest_ClusterAndShadowAgree' -v ./test/e2e/

## bench-digests: the time from one member perturbing its own state (a coordd_unsafe_perturb test build) to the alarm naming it, 5 runs (median and max)
bench-digests:
	$(GO) test -run '^$$' -bench 'E2E_DigestPerturbToAlarm' -benchtime 5x -timeout 20m -v ./test/e2e/

## test-crash: the crash-safety end-to-end test with 50 rounds of SIGKILLs (one node or all three) under load (not part of make test)
test-crash:
	COORDD_CRASH_ROUNDS=50 $(GO) test -race -timeout 30m -run Test_E2E_Crash -v ./test/e2e/

# FUZZTIME is how long make fuzz runs each target (FUZZTIME=10m for a release).
FUZZTIME ?= 1m
FUZZ = $(GO) test -run '^$$' -fuzztime $(FUZZTIME) -fuzz

## fuzz: each fuzz target in turn for FUZZTIME (default 1m): the command decoder and apply, the snapshot reader and writer, the state reader, the HTTP API's request parsing, fencing tokens; a failing input is written to the package's testdata/fuzz/ (not part of make test)
fuzz:
	$(FUZZ) '^FuzzDecodeCommand$$' ./fsm/
	$(FUZZ) '^FuzzDecodeApply$$' ./fsm/
	$(FUZZ) '^FuzzPayloadDecoders$$' ./fsm/
	$(FUZZ) '^FuzzReadState$$' ./fsm/
	$(FUZZ) '^FuzzTxnDecode$$' ./fsm/
	$(FUZZ) '^FuzzReader$$' ./snapshot/
	$(FUZZ) '^FuzzWriterRoundTrip$$' ./snapshot/
	$(FUZZ) '^FuzzKVRequest$$' ./httpapi/
	$(FUZZ) '^FuzzACLRequest$$' ./httpapi/
	$(FUZZ) '^FuzzTxnRequest$$' ./httpapi/
	$(FUZZ) '^FuzzParseToken$$' ./fencing/

vet:
	$(GO) vet ./...
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf $(BIN) data data-tls

## bench-e2e: lease and election benchmarks against three real coordd processes (not part of make test)
bench-e2e:
	$(GO) test -run '^$$' -bench 'E2E_Handoff' -benchtime 500x -count 3 -timeout 20m ./test/e2e/
	$(GO) test -run '^$$' -bench 'E2E_HolderStops' -benchtime 10x -count 3 -timeout 20m ./test/e2e/
	$(GO) test -run '^$$' -bench 'E2E_Keepalive' -benchtime 1x -count 3 -timeout 20m ./test/e2e/
	$(GO) test -run '^$$' -bench 'E2E_ClientFailover' -benchtime 5x -timeout 20m ./test/e2e/

# STALL_SECONDS lists the stalls of make bench-stall (5,60 adds a minute);
# STALL_TRIALS is the number of trials of each; STALL_FAULTS the faults
# of the leader: stop (SIGSTOP) and isolate (cut from its peers).
STALL_SECONDS ?= 5
STALL_TRIALS  ?= 20
STALL_FAULTS  ?= stop,isolate

## bench-stall: a 3-node cluster with the default Raft timing (Raft through loopback proxies), its leader SIGSTOPped, then isolated from its peers (STALL_FAULTS=stop,isolate), for STALL_SECONDS (5; STALL_SECONDS=5,60 adds a minute-long fault) STALL_TRIALS times (20) each; 50 ms into each fault GET, PUT, single and batched keepalive, lock and campaign with and without wait go to both other nodes: median and max time to their answer (COORDD_E2E_BIN=path measures another build; not part of make test)
bench-stall:
	COORDD_STALL_BENCH=1 COORDD_STALL_SECONDS=$(STALL_SECONDS) COORDD_STALL_TRIALS=$(STALL_TRIALS) COORDD_STALL_FAULTS=$(STALL_FAULTS) $(GO) test -count=1 -timeout 90m -run 'TestStallBench' -v ./test/e2e/

## bench-txn: transactions (3 compares + 3 puts) vs plain puts on a 3-node in-process cluster, 1/16/64 clients, at the leader and through every node: ops/s, p50/p99/max (about 2 minutes; not part of make test)
bench-txn:
	$(GO) test -run '^$$' -bench 'TxnVsPut' -benchtime 3000x -count 3 -timeout 30m ./client/

## bench-recovery: snapshot and recovery benchmarks: write latency during a snapshot of 1M leases, restart-to-ready and join catch-up with 64 and 256 MiB of state (not part of make test)
bench-recovery:
	$(GO) test -run '^$$' -bench 'WriteState' -count 3 ./fsm/
	$(GO) test -run '^$$' -bench 'Snapshot_' -benchtime 1x -count 3 -timeout 45m ./server/
	$(GO) test -run '^$$' -bench 'Recovery_' -benchtime 1x -count 3 -timeout 60m ./test/e2e/

# BENCH_FLAGS adds coordbench flags, e.g. BENCH_FLAGS="-json-out bench.jsonl".
BENCH_FLAGS ?=

## bench: coordbench's standard set on fresh loopback clusters of ./bin/coordd, clients spread over every node (-target rr; acquire and the single-call keepalive also at the leader only, and compared): acquire, acquire-new, keepalive (10,000 single calls, 10,000 in batches, 100,000 held), handoff, holder crash, leader kill, recovery, watchers, big-expiry: a table of median [min..max] over 3 runs, each goal met or MISSED, and the count of goals met and missed (about 23 minutes on 2 cores, measured 18:19 UTC Dec 6; the 100,000-lease keepalive takes about 5 of them)
bench: build
	$(GOBUILD) -o $(BIN)/coordbench ./cmd/coordbench
	$(BIN)/coordbench -mode standard -own-cluster -coordd $(BIN)/coordd -runs 3 -hold-runs 3 -idle 10s $(BENCH_FLAGS)

## bench-scale: coordbench's million mode, one run on a fresh loopback cluster of ./bin/coordd: 1,000,000 leases held with batched keepalives (memory per lease, keepalive CPU, snapshot and backup size and time, restart-to-ready of a follower, unintended expiries: goal 0) (about 15 minutes on 2 cores; not part of make bench, which runs the other scale modes, watchers and big-expiry)
bench-scale: build
	$(GOBUILD) -o $(BIN)/coordbench ./cmd/coordbench
	$(BIN)/coordbench -mode million -coordd $(BIN)/coordd -runs 1 $(BENCH_FLAGS)

## bench-churn: 1,000 unique lock names a second for 10 minutes on one in-process node: state entries, heap and snapshot size at 1, 5 and 10 minutes stay flat (COORDD_BENCH_CHURN_DURATION shortens it; not part of make test)
bench-churn:
	$(GO) test -run '^$$' -bench 'Churn_UniqueLockNames' -benchtime 1x -timeout 20m ./server/

## bench-micro: go test microbenchmarks: FSM apply and command encoding, snapshot persist (100k leases), the lease clock with 100k leases, the cost of access control per request (about a minute)
bench-micro:
	$(GO) test -run '^$$' -bench . -benchmem -count 3 ./fsm/ ./lease/
	$(GO) test -run '^$$' -bench BenchmarkAuthorize -benchmem -count 3 ./httpapi/

# SESSION_TRIALS sets the trials of each fault of bench-sessions (the issue's full run: 20).
SESSION_TRIALS ?= 20

## bench-sessions: coordbench leader-faults: 20 Sessions with TTL 3 s and 20 with TTL 1 s through a 5 s and a 60 s stall (SIGSTOP), an isolation and a SIGKILL of the Raft leader, SESSION_TRIALS (20) trials each: sessions lost per fault (about 35 minutes; SESSION_TRIALS=3 for a shorter run)
bench-sessions: build
	$(GOBUILD) -o $(BIN)/coordbench ./cmd/coordbench
	$(BIN)/coordbench -mode leader-faults -coordd $(BIN)/coordd -runs 1 -rounds $(SESSION_TRIALS) $(BENCH_FLAGS)

## bench-quick: a smoke run of every coordbench mode of the standard set, acquire and the single-call keepalive with both targets (about two minutes)
bench-quick: build
	$(GOBUILD) -o $(BIN)/coordbench ./cmd/coordbench
	$(BIN)/coordbench -mode standard -own-cluster -coordd $(BIN)/coordd -quick $(BENCH_FLAGS)

# --- Containers (see docs/operations.md, "Running in containers") ---
# IMAGE names the image; DOCKER_CTX is its whole build context (static
# binaries and an empty data dir owned by the image's user), so nothing else
# of the repository is sent to the Docker daemon. NODES=5 uses
# deploy/compose-5.yaml. The compose command is `docker compose` (v2) when
# present, else docker-compose (v1).
IMAGE      ?= coordd:dev
DOCKER_CTX := $(BIN)/docker
NODES      ?= 3
COMPOSE_FILE := deploy/$(if $(filter 5,$(NODES)),compose-5.yaml,compose.yaml)
COMPOSE    ?= $(shell docker compose version >/dev/null 2>&1 && echo 'docker compose' || echo docker-compose)
COMPOSE_PROJECT ?= coordd

.PHONY: image image-prometheus compose-up compose-down compose-clean test-docker

## image: build the FROM-scratch image $(IMAGE) (coordd:dev) around static coordd and coordctl
image:
	rm -rf $(DOCKER_CTX)
	mkdir -p $(DOCKER_CTX)/data
	CGO_ENABLED=0 $(GOBUILD) -trimpath -ldflags '-s -w' -o $(DOCKER_CTX)/coordd ./cmd/coordd
	CGO_ENABLED=0 $(GOBUILD) -trimpath -ldflags '-s -w' -o $(DOCKER_CTX)/coordctl ./cmd/coordctl
	docker build -f deploy/Dockerfile -t $(IMAGE) $(DOCKER_CTX)

# PROMETHEUS_IMAGE names the optional Prometheus image of the compose file
# (profile "monitoring"); PROMETHEUS_CTX is its build context.
PROMETHEUS_IMAGE ?= coordd-prometheus:dev
PROMETHEUS_CTX   := $(BIN)/docker-prometheus

## image-prometheus: build $(PROMETHEUS_IMAGE), a FROM-scratch Prometheus made of Debian's prometheus package (installed if missing) with deploy/prometheus/prometheus.yml and alerts.yml
image-prometheus:
	$(call apt_install,prometheus,prometheus)
	rm -rf $(PROMETHEUS_CTX)
	mkdir -p $(PROMETHEUS_CTX)/data $(PROMETHEUS_CTX)/rootfs/usr/bin $(PROMETHEUS_CTX)/rootfs/usr/share/prometheus $(PROMETHEUS_CTX)/rootfs/etc/prometheus
	cp /usr/bin/prometheus $(PROMETHEUS_CTX)/rootfs/usr/bin/
	for lib in $$(ldd /usr/bin/prometheus | grep -o '/[^ ]*'); do \
		mkdir -p $(PROMETHEUS_CTX)/rootfs$$(dirname $$lib) && cp -L $$lib $(PROMETHEUS_CTX)/rootfs$$lib || exit 1; done
	cp -r /usr/share/prometheus/web $(PROMETHEUS_CTX)/rootfs/usr/share/prometheus/
	cp deploy/prometheus/prometheus.yml deploy/prometheus/alerts.yml $(PROMETHEUS_CTX)/rootfs/etc/prometheus/
	docker build -f deploy/prometheus/Dockerfile -t $(PROMETHEUS_IMAGE) $(PROMETHEUS_CTX)

# MONITORING=1 makes compose-up build and start the optional Prometheus too
# (3-node compose file only).
MONITORING ?=
COMPOSE_PROFILE = $(if $(filter 1,$(MONITORING)),--profile monitoring)

## compose-up: build the image and start a 3-node cluster (NODES=5 for five) in containers; HTTP on 127.0.0.1:7301-7303 (-7305); MONITORING=1 adds Prometheus with coordd's alert rules on 127.0.0.1:9090 (make image-prometheus)
compose-up: image $(if $(filter 1,$(MONITORING)),image-prometheus)
	COORDD_IMAGE=$(IMAGE) PROMETHEUS_IMAGE=$(PROMETHEUS_IMAGE) $(COMPOSE) $(COMPOSE_PROFILE) -p $(COMPOSE_PROJECT) -f $(COMPOSE_FILE) up -d

## compose-down: stop and remove the cluster's containers (Prometheus's too) and network; the data volumes are kept
compose-down:
	$(COMPOSE) --profile monitoring -p $(COMPOSE_PROJECT) -f $(COMPOSE_FILE) down --remove-orphans

## compose-clean: like compose-down, and also remove the data volumes
compose-clean:
	$(COMPOSE) --profile monitoring -p $(COMPOSE_PROJECT) -f $(COMPOSE_FILE) down -v --remove-orphans

## test-docker: fault tests of the compose cluster with real containers: leader kill, network partition, paused lease holder, rolling restart (needs Docker; not part of make test)
test-docker:
	COORDD_DOCKER_TEST=1 $(GO) test -count=1 -timeout 15m -v ./test/docker/
