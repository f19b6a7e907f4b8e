#!/usr/bin/env bash
# Starts `winky-dev up` in the background and waits until it is ready.
set -euo pipefail
dev=${1:-.dev}
mkdir -p "$dev"
# Whatever DEV is called, git ignores it: logs, kubeconfig, pid, a repository.
[ -e "$dev/.gitignore" ] || printf '# written by hack/up.sh: nothing here belongs in git\n*\n' >"$dev/.gitignore"
if [ -f "$dev/pid" ] && kill -0 "$(cat "$dev/pid")" 2>/dev/null && [ -f "$dev/ready" ]; then
  echo "already up (pid $(cat "$dev/pid")); KUBECONFIG=$dev/kubeconfig"
  exit 0
fi
rm -f "$dev/ready"
nohup target/debug/winky-dev up "$dev" >"$dev/up.log" 2>&1 &
echo $! >"$dev/pid"
for _ in $(seq 1 600); do
  if [ -f "$dev/ready" ]; then
    cat "$dev/up.log"
    echo "up: KUBECONFIG=$PWD/$dev/kubeconfig $dev/kubectl get winky -A   (stop with: make down)"
    exit 0
  fi
  if ! kill -0 "$(cat "$dev/pid")" 2>/dev/null; then
    echo "up: winky-dev exited; its output:" >&2
    cat "$dev/up.log" >&2
    exit 1
  fi
  sleep 0.2
done
echo "up: not ready after 120 s; see $dev/up.log" >&2
exit 1
