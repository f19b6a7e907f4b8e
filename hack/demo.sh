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
echo "== the pipeline: each stage runs the revision promoted into it"
"${k[@]}" get promotions -n notes
"${k[@]}" get app notes -n notes -o jsonpath='{range .status.stages[*]}  {.name}: namespace {.namespace}, revision {.revision}{"\n"}{end}'
echo
echo "== what the operator created for preview (namespace notes-preview)"
"${k[@]}" get deployments,services,serviceaccounts,configmaps,networkpolicies,poddisruptionbudgets -n notes-preview -l winky.dev/app=notes
echo
echo "== Events"
"${k[@]}" get events -n notes --field-selector involvedObject.kind=App

echo
echo "== clone → commit → push: the push webhook applies the merge at once"
work=$dev/work
rm -rf "$work"
git clone --quiet "$(cat "$dev/git-url")" "$work"
# Three replicas, or two again when an earlier demo already made it three.
if grep -q '^  replicas: 3$' "$work/deploy/notes/app.yaml"; then want=2; else want=3; fi
sed -i "s/^  replicas: [0-9]*$/  replicas: $want/" "$work/deploy/notes/app.yaml"
git -C "$work" -c user.name=demo -c user.email=demo@winky.invalid commit --quiet -am "feat(notes): $want replicas"
after=$(git -C "$work" rev-parse HEAD)
started=$(date +%s%N)
git -C "$work" push origin HEAD:main 2>&1 | sed 's/^/  /'
for _ in $(seq 1 100); do
  [ "$("${k[@]}" get gitsource examples -n winky-system -o jsonpath='{.status.lastAppliedCommit}')" = "$after" ] && break
  sleep 0.05
done
echo "  applied ${after:0:12} in $(( ($(date +%s%N) - started) / 1000000 )) ms: notes now wants $("${k[@]}" get app notes -n notes -o jsonpath='{.spec.replicas}') replicas"
echo "  a new revision, so a new promotion into preview:"
for _ in $(seq 1 40); do
  [ "$("${k[@]}" get promotions -n notes --no-headers 2>/dev/null | wc -l)" -gt 2 ] && break
  sleep 0.25
done
"${k[@]}" get promotions -n notes
"${k[@]}" get events -n winky-system --field-selector involvedObject.name=examples
cat <<MSG

The control plane, the operator and the container engine keep running. No
node runs pods here, so the App stays Progressing (its pods are created,
admitted under Pod Security "restricted", and wait for a node); the emulator
ran its checks in podman containers instead.

The notes App follows the default PromotionPolicy: each revision entered
preview once its emulator checks passed, and now waits in staging for an
approval: an approver's /approve comment on the GitHub pull request that
merged it (docs/promotions.md). This local repository is pushed to
directly and has no pull requests, so staging waits here.

  export KUBECONFIG=$PWD/$dev/kubeconfig
  $dev/kubectl get winky -A
  git clone \$(cat $dev/git-url) work && cd work   # edit, commit, git push: applied at once
  $dev/kubectl describe app notes -n notes
  target/debug/winky emulate -f examples/shop --engine $engine --output json

Stop everything with: make down
MSG
