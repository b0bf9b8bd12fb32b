#!/bin/sh
# The README's first command: install what is missing, build, and bring up
# the lab (a two-node tandem cluster with its DNS on this machine).
# Extra arguments go to `tandem lab up` (e.g. --name demo, or --failover
# automatic for a lab with the witness host w).
set -eu
cd "$(dirname "$0")/.."
./scripts/deps.sh
./scripts/build.sh
exec ./bin/tandem lab up "$@"
