# Plenary — one Makefile for the whole workspace.
#   make run    all four services in one process (embedded NATS, FerretDB, mailbox)
#   make test   every test that needs no Docker
#   make build  static binaries of the services and the local launcher into bin/
#   make lint   gofmt and go vet, in the workspace and per module with GOWORK=off
#   make bench  drive the whole system in-process and print one table beside the raw limits
#   make images the services, NATS, FerretDB and Mailpit as images FROM scratch (needs Docker)
#   make test-containers  the end-to-end suite against those images, with testcontainers-go

MODULES := pkg services/registration services/agenda services/notification services/mailer deploy/local
PACKAGES := $(addsuffix /...,$(addprefix ./,$(MODULES)))
GO ?= go
GOTEST_FLAGS ?= -count=1 -timeout 10m

# testcontainers-go: no reaper image can be pulled here, and the host it
# guesses may not be this machine. Keep every test on loopback.
export TESTCONTAINERS_RYUK_DISABLED := true
export TESTCONTAINERS_HOST_OVERRIDE := 127.0.0.1

.PHONY: run demo test bench images test-containers build lint vet fmt modules-standalone tidy clean

run:
	$(GO) run ./deploy/local $(ARGS)

demo:
	$(GO) run ./deploy/local --demo $(ARGS)

test:
	$(GO) test $(GOTEST_FLAGS) $(PACKAGES)

BENCH_N ?= 10000
BENCH_CONCURRENCY ?= 32

bench:
	$(GO) run ./deploy/local --bench $(BENCH_N) --concurrency $(BENCH_CONCURRENCY)

images:
	bash deploy/images/build.sh

# deploy/containers is a module of its own, outside go.work: the Docker
# client's dependencies stay out of the services' builds.
test-containers: images
	cd deploy/containers && GOWORK=off $(GO) test -tags containers $(GOTEST_FLAGS) -v ./...

build:
	@mkdir -p bin
	CGO_ENABLED=0 $(GO) build -o bin/ ./services/registration/cmd/registration ./services/agenda/cmd/agenda \
		./services/notification/cmd/notification ./services/mailer/cmd/mailer
	CGO_ENABLED=0 $(GO) build -o bin/plenary-local ./deploy/local

fmt:
	gofmt -w $(MODULES)

lint: vet
	@out=$$(gofmt -l $(MODULES) deploy/containers); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	cd deploy/containers && GOWORK=off $(GO) vet -tags containers ./...

vet:
	$(GO) vet $(PACKAGES)

# Every module must build, vet and pass its tests on its own, outside the
# workspace, with the versions its own go.mod selects.
modules-standalone:
	@set -e; for m in $(MODULES); do echo "== $$m (GOWORK=off)"; \
		(cd $$m && GOWORK=off $(GO) build ./... && GOWORK=off $(GO) vet ./... && \
		 GOWORK=off $(GO) test $(GOTEST_FLAGS) ./...); done
	cd deploy/containers && GOWORK=off $(GO) build ./... && GOWORK=off $(GO) vet -tags containers ./...

tidy:
	@set -e; for m in $(MODULES) deploy/containers; do (cd $$m && GOWORK=off $(GO) mod tidy); done

clean:
	rm -rf bin .data
