#!/usr/bin/env bash
# The examples on the running local control plane: the emulator's results for
# each; the examples applied from the local git repository by the GitSource
# winky-system/examples — what the operator created, the App's conditions as
# they change, its emulator result; then a change cloned, committed and pushed,
# applied through the signed push webhook; everything left running.
set -euo pipefail
dev=${1:-.dev}
k=("$dev/kubectl" --kubeconfig "$dev/kubeconfig")
engine=$dev/engine/podman.sock

for app in notes shop chat; do
  echo "== winky emulate -f examples/$app"
  target/debug/winky emulate -f "examples/$app" --engine "$engine" 2>/dev/null | tail -4 || true
  echo
done

echo "== GitSource winky-system/examples applies $(cat "$dev/git-url")"
for _ in $(seq 1 100); do
  commit=$("${k[@]}" get gitsource examples -n winky-system -o jsonpath='{.status.lastAppliedCommit}')
  [ -n "$commit" ] && break
  sleep 0.2
done
"${k[@]}" get gitsource examples -n winky-system

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

echo
echo "== clone → commit → push: the push webhook applies the merge at once"
work=$dev/work
rm -rf "$work"
git clone --quiet "$(cat "$dev/git-url")" "$work"
sed -i 's/^  replicas: 2$/  replicas: 3/' "$work/deploy/notes/app.yaml"
git -C "$work" -c user.name=demo -c user.email=demo@winky.invalid commit --quiet -am "feat(notes): three replicas"
after=$(git -C "$work" rev-parse HEAD)
started=$(date +%s%N)
git -C "$work" push origin HEAD:main 2>&1 | sed 's/^/  /'
for _ in $(seq 1 100); do
  [ "$("${k[@]}" get gitsource examples -n winky-system -o jsonpath='{.status.lastAppliedCommit}')" = "$after" ] && break
  sleep 0.05
done
echo "  applied ${after:0:12} in $(( ($(date +%s%N) - started) / 1000000 )) ms: notes now wants $("${k[@]}" get app notes -n notes -o jsonpath='{.spec.replicas}') replicas"
"${k[@]}" get events -n winky-system --field-selector involvedObject.name=examples
cat <<MSG

The control plane, the operator and the container engine keep running. No
node runs pods here, so the App stays Progressing (its pods are created,
admitted under Pod Security "restricted", and wait for a node); the emulator
ran its checks in podman containers instead.

  export KUBECONFIG=$PWD/$dev/kubeconfig
  $dev/kubectl get winky -A
  git clone \$(cat $dev/git-url) work && cd work   # edit, commit, git push: applied at once
  $dev/kubectl describe app notes -n notes
  target/debug/winky emulate -f examples/shop --engine $engine --output json

Stop everything with: make down
MSG
