#!/bin/sh
# Installs what tandem's lab and tests need on a fresh Debian machine:
# PostgreSQL server binaries, dnsmasq (the lab's DNS server) and iproute2.
# Runs apt-get update once, and only when something is missing.
set -eu

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

if [ -z "$need" ]; then
	echo "deps: everything needed is installed"
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "deps: missing:$need — run as root (sudo) to install them" >&2
	exit 1
fi
# tandemd initialises and runs its own PostgreSQL instances; stop Debian's
# package from creating and starting a default cluster on port 5432.
if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
	mkdir -p /etc/postgresql-common
	echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf
fi
echo "deps: installing:$need"
export DEBIAN_FRONTEND=noninteractive
apt-get update
# shellcheck disable=SC2086
apt-get install -y --no-install-recommends $need
