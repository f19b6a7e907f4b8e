#!/usr/bin/env bash
# Regenerate e2e/github/openapi.json and e2e/github/examples/ from the pinned
# @octokit/openapi package, then check every example against its schema.
#
#   e2e/github/vendor.sh                 # fetch, extract, verify
#   VERIFY=0 e2e/github/vendor.sh        # skip the check (no PyPI needed)
#   PYTHON_JSONSCHEMA=/path/to/python e2e/github/vendor.sh
#                                        # check with a python that already has jsonschema
#
# Needs npm (registry access), python3 and tar. Idempotent: a second run leaves
# every file byte-identical. To move to a new version, change VERSION and
# SHA256 (sha256sum of the tarball `npm pack` writes) and run it.
set -euo pipefail

VERSION=23.0.2
SHA256=71a18407dd5e8464f4e0525daf03deabbe65abd9287d6adc7b5d98f516cd0d0c
JSONSCHEMA_REQ="jsonschema[format]==4.26.0"

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

(cd "$tmp" && npm pack --silent "@octokit/openapi@$VERSION" >/dev/null)
tgz="$tmp/octokit-openapi-$VERSION.tgz"
[ -f "$tgz" ] || { echo "vendor.sh: npm pack wrote no $tgz" >&2; exit 1; }
got=$(sha256sum "$tgz" | cut -d' ' -f1)
if [ "$got" != "$SHA256" ]; then
  echo "vendor.sh: sha256 of $(basename "$tgz") is $got, expected $SHA256" >&2
  exit 1
fi
tar -xzf "$tgz" -C "$tmp" package/generated/api.github.com.json

python3 "$here/extract.py" \
  --spec "$tmp/package/generated/api.github.com.json" \
  --version "$VERSION" \
  --out "$here"

if [ "${VERIFY:-1}" = 0 ]; then
  echo "vendor.sh: VERIFY=0, examples not checked"
  exit 0
fi
py=${PYTHON_JSONSCHEMA:-}
if [ -z "$py" ]; then
  python3 -m venv "$tmp/venv"
  "$tmp/venv/bin/pip" install --quiet --disable-pip-version-check "$JSONSCHEMA_REQ"
  py="$tmp/venv/bin/python"
fi
"$py" "$here/verify.py" "$here"
