#!/usr/bin/env bash
# Builds the example programs (examples/images, static Go binaries) and loads
# them into a container engine under the names examples/images/images.txt
# gives them, with `winky image import`.
#
#   hack/images.sh SOCKET     SOCKET: the engine's Docker API socket (hack/podman.sh start DIR prints it)
#
# Go's build cache makes a second run cost little; loading an image that is
# already there is a no-op in the engine (same content, same id).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 1 ] || { echo "usage: $0 SOCKET" >&2; exit 2; }
socket=$1
winky=${WINKY:-target/debug/winky}
[ -x "$winky" ] || { echo "images.sh: $winky is not built: cargo build -p winky-agent" >&2; exit 1; }
out=target/images
mkdir -p "$out"

command -v go >/dev/null 2>&1 || { echo "images.sh: go is needed to build the example programs (make prereqs installs it)" >&2; exit 1; }
programs=$(grep -v '^#' examples/images/images.txt | awk 'NF {print $1}' | sort -u)
for program in $programs; do
  (cd examples/images && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "../../$out/$program" "./$program")
done
grep -v '^#' examples/images/images.txt | awk 'NF {print $1, $2}' | while read -r program image; do
  "$winky" image import --engine "$socket" "$image" "$out/$program"
done
