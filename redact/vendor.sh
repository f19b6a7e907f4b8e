#!/usr/bin/env bash
# Re-download gitleaks through the Go module proxy and refresh Winky's
# redaction data from it. See redact/README.md.
#
#   redact/vendor.sh [ids]   print the module version and every rule id it
#                                  has; "*" marks the ids used in rules.toml
#   redact/vendor.sh rules   regenerate rules.toml (tools/make_rules.py)
#   redact/vendor.sh corpus  regenerate tests/corpus/positives.txt from the
#                                  module's rule-generator samples
#   redact/vendor.sh check   run gitleaks' own Go detector over the corpus
#
# GITLEAKS_VERSION  module version; default: the one recorded in rules.toml,
#                   "latest" to move to the newest release
# WINKY_VENDOR_DIR  scratch directory (default ${TMPDIR:-/tmp}/winky-gitleaks)
#
# Needs go and python3 >= 3.11. Every command only reads the module and
# rewrites its own outputs, so running it again gives the same result.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
rules_toml="$here/rules.toml"
corpus_dir="$(cd "$here/tests/corpus" && pwd)"
module="github.com/zricethezav/gitleaks/v8"
cmd="${1:-ids}"
case "$cmd" in
  ids | rules | corpus | check) ;;
  *) sed -n '2,16p' "$0" >&2; exit 2 ;;
esac

pinned="$(sed -n 's/^source = "[^@]*@\([^:]*\):.*/\1/p' "$rules_toml" 2>/dev/null || true)"
version="${GITLEAKS_VERSION:-${pinned:-latest}}"
work="${WINKY_VENDOR_DIR:-${TMPDIR:-/tmp}/winky-gitleaks}"

command -v go >/dev/null || { echo "vendor.sh: go is required" >&2; exit 1; }
command -v python3 >/dev/null || { echo "vendor.sh: python3 is required" >&2; exit 1; }

# Download (or find in the module cache) the module; sets $dir and $resolved.
mkdir -p "$work/mod"
if [[ ! -f "$work/mod/go.mod" ]]; then
  (cd "$work/mod" && go mod init winky-gitleaks-vendor >/dev/null 2>&1)
fi
json="$(cd "$work/mod" && GOFLAGS=-mod=mod go mod download -json "$module@$version")"
dir="$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
resolved="$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Version": "\(.*\)",\{0,1\}$/\1/p')"
if [[ -z "$dir" || ! -f "$dir/config/gitleaks.toml" ]]; then
  printf '%s\n' "$json" >&2
  echo "vendor.sh: could not download $module@$version" >&2
  exit 1
fi

case "$cmd" in
  ids)
    echo "module:  $module@$resolved"
    echo "dir:     $dir"
    echo "config:  $dir/config/gitleaks.toml"
    [[ -n "$pinned" ]] && echo "rules.toml was taken from: $module@$pinned"
    used="$(sed -n 's/^id = "\(.*\)"$/\1/p' "$rules_toml" 2>/dev/null || true)"
    total=0
    while read -r id; do
      total=$((total + 1))
      if grep -qxF "$id" <<<"$used"; then echo "* $id"; else echo "  $id"; fi
    done < <(sed -n "s/^id = \"\(.*\)\"$/\1/p" "$dir/config/gitleaks.toml")
    echo "$total rules in gitleaks $resolved; * = used in rules.toml"
    ;;
  rules)
    python3 "$here/tools/make_rules.py" "$dir" "$resolved" "$rules_toml"
    echo "wrote $rules_toml from $module@$resolved"
    ;;
  corpus|check)
    src="$work/src-$resolved"
    rm -rf "$src"
    cp -R "$dir" "$src"
    chmod -R u+w "$src"
    cp -R "$here/tools/overlay/." "$src/"
    mkdir -p "$src/cmd/winkydump"
    python3 "$here/tools/make_corpus.py" dumpmain "$src/cmd/generate/config/main.go" "$src/cmd/winkydump/main.go"
    sed -n 's/^id = "\(.*\)"$/\1/p' "$rules_toml" >"$work/ids.txt"
    if [[ "$cmd" == corpus ]]; then
      (cd "$src" && GOFLAGS=-mod=mod go run ./cmd/winkydump) >"$work/tps.json"
      python3 "$here/tools/make_corpus.py" cand "$work/tps.json" "$rules_toml" "$work/candidates.txt"
      : >"$work/empty.txt"
      (cd "$src" && PASSING_OUT="$work/passing.txt" GOFLAGS=-mod=mod go run ./cmd/winkyverify \
        "$rules_toml" "$work/candidates.txt" "$work/empty.txt") | tail -n 1
      python3 "$here/tools/make_corpus.py" select "$work/passing.txt" "$corpus_dir/positives.txt"
      echo "wrote $corpus_dir/positives.txt"
    fi
    (cd "$src" && GOFLAGS=-mod=mod go run ./cmd/winkyverify \
      "$rules_toml" "$corpus_dir/positives.txt" "$corpus_dir/negatives.txt") | tail -n 1
    (cd "$src" && GOFLAGS=-mod=mod go run ./cmd/winkyverify \
      "$src/config/gitleaks.toml" "$corpus_dir/positives.txt" "$corpus_dir/negatives.txt" "$work/ids.txt") | tail -n 1
    ;;
esac
