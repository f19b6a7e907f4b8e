#!/usr/bin/env bash
# The examples on the running local control plane: the emulator's results for
# each, then the notes app applied — what the operator created, the App's
# conditions as they change, its emulator result — and everything left running.
set -euo pipefail
dev=${1:-.dev}
k=("$dev/kubectl" --kubeconfig "$dev/kubeconfig")
engine=$dev/engine/podman.sock

for app in notes shop chat; do
  echo "== winky emulate -f examples/$app"
  target/debug/winky emulate -f "examples/$app" --engine "$engine" 2>/dev/null | tail -4 || true
  echo
done

echo "== kubectl apply -R -f examples/notes"
"${k[@]}" apply -R -f examples/notes

echo
echo "== App conditions and emulator result as they change (10 s)"
last=""
for _ in $(seq 1 20); do
  now=$("${k[@]}" get apps.winky.dev notes -n notes \
    -o jsonpath='{.metadata.name} rev={.status.revision.id}{range .status.conditions[*]} {.type}={.status}({.reason}){end} emulator passed={.status.emulator.passed} checks={.status.emulator.checks}')
  [ "$now" != "$last" ] && echo "$now"
  last=$now
  case $now in *"passed=true"*|*"passed=false"*) break ;; esac
  sleep 0.5
done

echo
echo "== kubectl get winky -n notes"
"${k[@]}" get winky -n notes
echo
echo "== what the operator created"
"${k[@]}" get deployments,services,serviceaccounts,configmaps,networkpolicies,poddisruptionbudgets -n notes -l winky.dev/app=notes
echo
echo "== Events"
"${k[@]}" get events -n notes --field-selector involvedObject.kind=App
cat <<MSG

The control plane, the operator and the container engine keep running. No
node runs pods here, so the App stays Progressing (its pods are created,
admitted under Pod Security "restricted", and wait for a node); the emulator
ran its checks in podman containers instead.

  export KUBECONFIG=$PWD/$dev/kubeconfig
  $dev/kubectl get winky -A
  $dev/kubectl describe app notes -n notes
  target/debug/winky emulate -f examples/shop --engine $engine --output json

Stop everything with: make down
MSG
