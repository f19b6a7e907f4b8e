#!/usr/bin/env bash
# Regenerate the webhook delivery fixtures in e2e/github/webhooks/ from the
# pinned @octokit/webhooks-examples package (real GitHub payloads, MIT).
#
#   e2e/github/webhooks/vendor.sh
#
# Needs npm (registry access), python3 and tar. Idempotent: a second run leaves
# every file byte-identical. To move to a new version, change VERSION and
# SHA256 (sha256sum of the tarball `npm pack` writes), run it, and review the
# diff: the picks below name examples by event, action and ref, so a reordered
# package still yields the same kind of payload.
set -euo pipefail

VERSION=7.6.1
SHA256=89e6cb1c6345d32e3dd775617fa54effbdc26c859e514898d7728e95e9738280

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

(cd "$tmp" && npm pack --silent "@octokit/webhooks-examples@$VERSION" >/dev/null)
tgz="$tmp/octokit-webhooks-examples-$VERSION.tgz"
[ -f "$tgz" ] || { echo "vendor.sh: npm pack wrote no $tgz" >&2; exit 1; }
got=$(sha256sum "$tgz" | cut -d' ' -f1)
if [ "$got" != "$SHA256" ]; then
  echo "vendor.sh: sha256 of $(basename "$tgz") is $got, expected $SHA256" >&2
  exit 1
fi
tar -xzf "$tgz" -C "$tmp" package/api.github.com/index.json

python3 - "$tmp/package/api.github.com/index.json" "$here" <<'PY'
import json, sys

index, out = sys.argv[1], sys.argv[2]
events = {e["name"]: e["examples"] for e in json.load(open(index, encoding="utf-8"))}

# file -> (event, what the example must have). The first example that matches is taken.
PICKS = {
    "ping.json": ("ping", lambda x: "repository" in x),
    "push-branch.json": ("push", lambda x: x["ref"].startswith("refs/heads/") and x["commits"]),
    "push-tag.json": ("push", lambda x: x["ref"].startswith("refs/tags/")),
    "pull_request-opened.json": ("pull_request", lambda x: x["action"] == "opened"),
    "issue_comment-created.json": ("issue_comment", lambda x: x["action"] == "created"),
    "pull_request_review-submitted.json": ("pull_request_review", lambda x: x["action"] == "submitted"),
}

for name, (event, wanted) in PICKS.items():
    found = [x for x in events[event] if wanted(x)]
    if not found:
        sys.exit(f"vendor.sh: no {event} example fits {name}")
    with open(f"{out}/{name}", "w", encoding="utf-8") as f:
        # Key order as published; two-space indent so diffs stay readable.
        json.dump(found[0], f, indent=2, ensure_ascii=False)
        f.write("\n")
    print(f"{name}: {event} example {events[event].index(found[0])}")
PY
