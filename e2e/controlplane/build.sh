#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager and kubectl from the Go module
# proxy into a cache keyed by version, so a second run costs nothing.
#
#   e2e/controlplane/build.sh          # prints the bin directory on stdout
#
# WINKY_CACHE (default ~/.cache/winky) holds the binaries; Go's own module and
# build caches (GOMODCACHE, GOCACHE) are reused as they are. A cold build takes
# about 20 minutes on 2 cores; see docs/control-plane.md.
set -euo pipefail

KUBE_VERSION=v1.36.3
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${WINKY_CACHE:-$HOME/.cache/winky}
bin="$cache/controlplane/$KUBE_VERSION/bin"
commands=(kube-apiserver kube-controller-manager kubectl)

complete() {
  for c in "${commands[@]}"; do [ -x "$bin/$c" ] || return 1; done
}

if complete; then
  echo "$bin"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  echo "build.sh: Go is not installed; install Go 1.26 or newer (apt-get install golang, or https://go.dev/dl)" >&2
  exit 1
fi

minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

echo "build.sh: building Kubernetes $KUBE_VERSION (${commands[*]}) into $bin; cold builds take ~20 min on 2 cores" >&2
mkdir -p "$bin.tmp"
cd "$here"
export GOWORK=off CGO_ENABLED=0
start=$(date +%s)
go build -trimpath -pgo=off -ldflags "$ldflags" -o "$bin.tmp/" \
  $(for c in "${commands[@]}"; do echo "k8s.io/kubernetes/cmd/$c"; done) >&2
rm -rf "$bin" && mv "$bin.tmp" "$bin"
echo "build.sh: built in $(( $(date +%s) - start ))s" >&2
echo "$bin"
