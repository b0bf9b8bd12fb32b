#!/bin/sh
# Builds tandem's release artefacts into ./dist:
#   dist/linux_amd64/, dist/linux_arm64/     tandem, tandemd and tandem-witness
#   dist/tandem_VERSION_amd64.deb, …_arm64.deb   the Debian packages (packaging/)
#   dist/console/OS_ARCH/tandem[.exe]         the console for operators' machines:
#                                            linux and darwin (amd64, arm64), windows (amd64)
#   dist/SHA256SUMS
# Usage: scripts/package.sh [VERSION]   (default 0.0.0-dev; a leading v is dropped)
# Pure Go, CGO_ENABLED=0, no Docker, no root.
set -eu
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"

VERSION="${1:-0.0.0-dev}"
VERSION="${VERSION#v}"
case "$VERSION" in
[0-9]*) ;;
*)
	echo "package: version '$VERSION' must start with a digit, like 0.1.0 or 1.2.0-rc1" >&2
	exit 2
	;;
esac

LDFLAGS="-X github.com/tandem-ha/tandem/internal/version.Version=$VERSION"
export CGO_ENABLED=0

build() { # GOOS GOARCH OUTDIR PACKAGE…
	os=$1 arch=$2 out=$3
	shift 3
	echo "package: $os/$arch -> $out"
	GOOS=$os GOARCH=$arch go build -trimpath -ldflags "$LDFLAGS" -o "$out/" "$@"
}

rm -rf dist
mkdir -p dist
# Build output, never source: keep git from picking any of it up.
echo '*' > dist/.gitignore

for arch in amd64 arm64; do
	build linux "$arch" "dist/linux_$arch" ./cmd/tandem ./cmd/tandemd ./cmd/tandem-witness
done

# mkdeb runs here, so build it for this machine, not for the targets.
mkdeb="$(mktemp -d)/mkdeb"
trap 'rm -rf "$(dirname "$mkdeb")"' EXIT
env -u GOOS -u GOARCH go build -o "$mkdeb" ./packaging/cmd/mkdeb
for arch in amd64 arm64; do
	"$mkdeb" -version "$VERSION" -arch "$arch" \
		-tandemd "dist/linux_$arch/tandemd" -witness "dist/linux_$arch/tandem-witness" \
		-tandem "dist/linux_$arch/tandem" -out dist
done

for target in linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64; do
	build "${target%/*}" "${target#*/}" "dist/console/${target%/*}_${target#*/}" ./cmd/tandem
done

(cd dist && find . -type f ! -name SHA256SUMS ! -name .gitignore | sed 's#^\./##' | LC_ALL=C sort | xargs sha256sum > SHA256SUMS)
echo "package: done"
find dist -type f ! -name .gitignore | LC_ALL=C sort
