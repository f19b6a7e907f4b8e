#!/usr/bin/env bash
# Stops what `make up` started and waits until no process of it is left.
set -euo pipefail
dev=${1:-.dev}
[ -f "$dev/pid" ] || { echo "down: nothing to stop"; exit 0; }
pid=$(cat "$dev/pid")
if kill -0 "$pid" 2>/dev/null; then
  kill -TERM "$pid"
  for _ in $(seq 1 150); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
fi
rm -f "$dev/pid" "$dev/ready"
# winky-dev stops its container engine on the way out; after a SIGKILL it
# could not. Stopping is idempotent, and a missing directory is fine.
bash "$(dirname "$0")/podman.sh" stop "$dev/engine" >/dev/null || true
# The components stop when winky-dev does; wait for them too.
for _ in $(seq 1 50); do
  pgrep -f -- "$PWD/$dev/run-" >/dev/null 2>&1 || { echo "down: stopped"; exit 0; }
  sleep 0.2
done
echo "down: processes remain:" >&2
pgrep -af -- "$PWD/$dev/run-" >&2 || true
exit 1
