#!/bin/sh
# Builds tandem and tandemd into ./bin.
set -eu
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
go build -o bin/ ./cmd/tandem ./cmd/tandemd
