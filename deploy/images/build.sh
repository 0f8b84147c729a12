#!/usr/bin/env bash
# Builds Plenary's images FROM scratch: the four services, and NATS, FerretDB
# and Mailpit built from their Go modules. Tag: plenary/<name>:${TAG:-dev}.
set -euo pipefail
cd "$(dirname "$0")/../.."
tag=${TAG:-dev}
out=$PWD/bin/images
mkdir -p "$out"

export CGO_ENABLED=0
go build -trimpath -o "$out/" ./services/registration/cmd/registration ./services/agenda/cmd/agenda \
	./services/notification/cmd/notification ./services/mailer/cmd/mailer \
	./deploy/local/cmd/ferretdb
# Third-party servers, each built in its own module graph at a pinned version.
# (FerretDB is built above from its embeddable package, at the version pkg/
# pins: its own command needs a version file only its repository generates.)
GOBIN=$out go install github.com/nats-io/nats-server/v2@v2.15.2
GOBIN=$out go install github.com/axllent/mailpit@v1.33.1

certs=/etc/ssl/certs/ca-certificates.crt
[ -f "$certs" ] || { echo "build.sh: $certs not found (install ca-certificates)" >&2; exit 1; }

for name in registration agenda notification mailer nats-server ferretdb mailpit; do
	ctx=$(mktemp -d)
	mkdir -p "$ctx/data" "$ctx/etc"
	cp "$out/$name" "$ctx/app"
	cp "$certs" "$ctx/ca-certificates.crt"
	[ "$name" = nats-server ] && cp deploy/images/nats.conf "$ctx/etc/nats.conf"
	image=plenary/${name%-server}:$tag
	if ! docker build -q -t "$image" -f deploy/images/Dockerfile "$ctx" >"$ctx.log" 2>&1; then
		cat "$ctx.log" >&2
		exit 1
	fi
	rm -rf "$ctx" "$ctx.log"
	echo "built $image"
done
