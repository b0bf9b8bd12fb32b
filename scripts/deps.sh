#!/bin/sh
# Installs what tandem's lab and tests need on a fresh Debian machine:
# PostgreSQL server binaries, dnsmasq (the lab's DNS server) and iproute2.
# With --test, also what only the test command needs: a C compiler and the
# C library headers (the race detector needs cgo), Chromium (the web
# console's end-to-end test) and staticcheck, pinned.
# Runs apt-get update once, and only when something is missing.
set -eu
export PATH="/usr/local/go/bin:$PATH"

# The linter's version; scripts/test.sh runs the binary this installs.
STATICCHECK_VERSION=0.8.2

test=false
case "${1:-}" in
"") ;;
--test) test=true ;;
*)
	echo "usage: $0 [--test]" >&2
	exit 2
	;;
esac

need=""
have_pg=false
for d in /usr/lib/postgresql/*/bin; do
	[ -x "$d/postgres" ] && [ -x "$d/initdb" ] && have_pg=true
done
$have_pg || need="$need postgresql"
command -v dnsmasq >/dev/null 2>&1 || need="$need dnsmasq-base"
command -v ip >/dev/null 2>&1 || need="$need iproute2"
command -v pgrep >/dev/null 2>&1 || need="$need procps"
command -v getent >/dev/null 2>&1 || need="$need libc-bin"
# docs/deploy.md, which e2e/deploy_test.go follows literally, uses these.
command -v curl >/dev/null 2>&1 || need="$need curl"
command -v openssl >/dev/null 2>&1 || need="$need openssl"
command -v script >/dev/null 2>&1 || need="$need bsdutils"
[ -x /usr/sbin/nft ] || need="$need nftables"
# `tandem lab up --failover automatic --etcd-external` (and its e2e tests)
# run Debian's etcd on lab hosts, as a site's own etcd cluster.
command -v etcd >/dev/null 2>&1 || [ -x /usr/bin/etcd ] || need="$need etcd-server"
# BIND 9: the cross-subnet lab's DNS server, and internal/dnsupdate's integration test.
command -v named >/dev/null 2>&1 || [ -x /usr/sbin/named ] || need="$need bind9"
if $test; then
	# `go test -race` builds with cgo; without gcc Go turns cgo off and
	# -race refuses to run. gcc alone (no recommends) lacks libc6-dev.
	command -v gcc >/dev/null 2>&1 || need="$need gcc"
	[ -e /usr/include/stdlib.h ] || need="$need libc6-dev"
	# e2e/webui_test.go drives the web console in headless Chromium.
	command -v chromium >/dev/null 2>&1 || need="$need chromium"
fi

if [ -z "$need" ]; then
	echo "deps: every package needed is installed"
elif [ "$(id -u)" != 0 ]; then
	echo "deps: missing:$need — run as root (sudo) to install them" >&2
	exit 1
else
	# tandemd initialises and runs its own PostgreSQL instances; stop
	# Debian's package from creating and starting a default cluster on
	# port 5432. A drop-in, which Debian's createcluster.conf includes:
	# writing that file itself would keep it in place of Debian's, whose
	# settings for new clusters would be lost.
	if [ ! -e /etc/postgresql-common/createcluster.d/tandem.conf ]; then
		mkdir -p /etc/postgresql-common/createcluster.d
		echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.d/tandem.conf
	fi
	echo "deps: installing:$need"
	export DEBIAN_FRONTEND=noninteractive
	# No package may start its service on this machine: etcd-server's
	# would run an etcd on the host's loopback, which nothing here uses
	# (the lab starts its own in namespaces). A policy-rc.d that refuses
	# every start does that, for this install only, where none exists.
	policy=/usr/sbin/policy-rc.d
	if [ ! -e $policy ]; then
		printf '#!/bin/sh\n# written by tandem scripts/deps.sh during apt-get install\nexit 101\n' >$policy
		chmod 755 $policy
		trap 'rm -f $policy' EXIT
	fi
	apt-get update
	# shellcheck disable=SC2086
	apt-get install -y --no-install-recommends $need
fi

if $test; then
	bin="$(go env GOBIN)"
	[ -n "$bin" ] || bin="$(go env GOPATH | cut -d: -f1)/bin"
	if "$bin/staticcheck" -version 2>/dev/null | grep -qF "($STATICCHECK_VERSION)"; then
		echo "deps: staticcheck $STATICCHECK_VERSION is installed in $bin"
	else
		echo "deps: installing staticcheck $STATICCHECK_VERSION into $bin"
		go install "honnef.co/go/tools/cmd/staticcheck@v$STATICCHECK_VERSION"
	fi
fi
