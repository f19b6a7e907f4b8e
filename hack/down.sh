#!/usr/bin/env bash
# Stops what `make up` started and waits until no process of it is left.
set -euo pipefail
dev=${1:-.dev}
[ -f "$dev/pid" ] || { echo "down: nothing to stop"; exit 0; }
pid=$(cat "$dev/pid")
# Running: a zombie (exited, not yet reaped by an init that does not reap) is not.
alive() { kill -0 "$1" 2>/dev/null && [ "$(ps -o stat= -p "$1" 2>/dev/null | cut -c1)" != Z ]; }
if alive "$pid"; then
  kill -TERM "$pid"
  for _ in $(seq 1 150); do
    alive "$pid" || break
    sleep 0.2
  done
  alive "$pid" && kill -KILL "$pid"
fi
rm -f "$dev/pid" "$dev/ready"
# winky-dev stops its container engine on the way out; after a SIGKILL it
# could not. Stopping is idempotent, and a missing directory is fine.
bash "$(dirname "$0")/podman.sh" stop "$dev/engine" >/dev/null || true
# The components stop when winky-dev does; wait for them too. Their command
# lines name the control plane's directory (`$dev/run-*`, made absolute with
# symlinks resolved, as winky-dev does) — except etcd's: its data lives in
# `$TMPDIR/winky-etcd-<stamp>-<pid of winky-dev>-<n>`, so match that as well.
dir=$(cd "$dev" && pwd -P)
components="$dir/run-|/winky-etcd-[0-9]+-$pid-[0-9]+( |\$)"
for _ in $(seq 1 50); do
  pgrep -f -- "$components" >/dev/null 2>&1 || { echo "down: stopped"; exit 0; }
  sleep 0.2
done
echo "down: processes remain:" >&2
pgrep -af -- "$components" >&2 || true
exit 1
