#!/usr/bin/env bash
# Builds Jaeger v2 (the all-in-one `jaeger` binary) from source and puts it in Go's bin folder,
# where `npm start` and the tests look for it (besides PATH). Needs Go 1.24 or newer.
#
# `go install github.com/jaegertracing/jaeger/cmd/jaeger@v1.75.0` does not work: Jaeger's go.mod
# has a replace directive, which `go install <pkg>@<version>` refuses. So the module is fetched
# with `go mod download` and built as the main module. Built this way the web UI is a placeholder
# page (its assets are not in the Go module); the query API is complete. For the full UI, take a
# release binary (https://github.com/jaegertracing/jaeger/releases) or the container image.
set -euo pipefail

# Go module v1.75.0 is Jaeger v2.12.0 (the module keeps v1 numbers).
VERSION="${JAEGER_MODULE_VERSION:-v1.75.0}"

GO="$(command -v go || true)"
if [ -z "$GO" ] && [ -x /usr/local/go/bin/go ]; then GO=/usr/local/go/bin/go; fi
if [ -z "$GO" ]; then
  echo "Go is needed to build Jaeger (https://go.dev/dl/); or put a release's jaeger binary on PATH." >&2
  exit 1
fi
BIN="$("$GO" env GOBIN)"
if [ -z "$BIN" ]; then BIN="$("$GO" env GOPATH | cut -d: -f1)/bin"; fi

SRC="$("$GO" mod download -json "github.com/jaegertracing/jaeger@$VERSION" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
if [ -z "$SRC" ]; then
  echo "go mod download did not return Jaeger's source for $VERSION" >&2
  exit 1
fi
mkdir -p "$BIN"
(cd "$SRC" && "$GO" build -o "$BIN/jaeger" ./cmd/jaeger)
echo "built $BIN/jaeger (Jaeger module $VERSION)"
