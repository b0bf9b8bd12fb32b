#!/bin/sh
# Builds tandem, tandemd and tandem-witness into ./bin.
set -eu
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
go build -o bin/ ./cmd/tandem ./cmd/tandemd ./cmd/tandem-witness
