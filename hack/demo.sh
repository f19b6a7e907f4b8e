#!/usr/bin/env bash
# The examples on the running local control plane: the emulator's results for
# each; the examples applied from the local git repository by the GitSource
# winky-system/examples — what the operator created, the App's conditions as
# they change, its emulator result, its pipeline; then an agent's pull request
# on the local GitHub, merged by a person and applied through the signed push
# webhook, promoted into preview and waiting in staging, and the approval that
# promotes it there, given with `winky-dev github comment`; everything left
# running.
set -euo pipefail
dev=${1:-.dev}
k=("$dev/kubectl" --kubeconfig "$dev/kubeconfig")
engine=$dev/engine/podman.sock
github=(target/debug/winky-dev github)
agent='winky-agent[bot]'
merger=dana
approver=alice

# The phase of the notes App's Promotion of revision $2 into stage $1.
phase() {
  "${k[@]}" get promotion "notes-$1-$2" -n notes -o jsonpath='{.status.phase}' 2>/dev/null || true
}
# Waits up to $3 seconds for that phase to be $4; says so when it is not.
wait_phase() {
  local stage=$1 rev=$2 seconds=$3 want=$4
  for _ in $(seq 1 $((seconds * 4))); do
    [ "$(phase "$stage" "$rev")" = "$want" ] && return 0
    sleep 0.25
  done
  echo "  (notes-$stage-$rev is $(phase "$stage" "$rev") after ${seconds} s, not $want)"
}
# Waits up to $3 seconds for that Promotion to be decided (not Verifying).
wait_decided() {
  local stage=$1 rev=$2 seconds=$3 now
  for _ in $(seq 1 $((seconds * 4))); do
    now=$(phase "$stage" "$rev")
    [ -n "$now" ] && [ "$now" != Verifying ] && return 0
    sleep 0.25
  done
  echo "  (notes-$stage-$rev is still ${now:-not there} after ${seconds} s)"
}
revision() {
  "${k[@]}" get app notes -n notes -o jsonpath='{.status.revision.id}'
}

for app in notes shop chat; do
  echo "== winky emulate -f examples/$app"
  target/debug/winky emulate -f "examples/$app" --engine "$engine" 2>/dev/null | tail -4 || true
  echo
done

echo "== GitSource winky-system/examples applies $(cat "$dev/git-url"): what a person merged on the local GitHub $(cat "$dev/github-url")"
for _ in $(seq 1 100); do
  commit=$("${k[@]}" get gitsource examples -n winky-system -o jsonpath='{.status.lastAppliedCommit}')
  [ -n "$commit" ] && break
  sleep 0.2
done
"${k[@]}" get gitsource examples -n winky-system
"${github[@]}" pulls "$dev" | sed 's/^/  /'

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
wait_decided staging "$(revision)" 30
"${k[@]}" get promotions -n notes
"${k[@]}" get app notes -n notes -o jsonpath='{range .status.stages[*]}  {.name}: namespace {.namespace}, revision {.revision}{"\n"}{end}'
echo
echo "== what the operator created for preview (namespace notes-preview)"
"${k[@]}" get deployments,services,serviceaccounts,configmaps,networkpolicies,poddisruptionbudgets -n notes-preview -l winky.dev/app=notes
echo
echo "== Events"
"${k[@]}" get events -n notes --field-selector involvedObject.kind=App

echo
echo "== an agent's pull request on the local GitHub"
work=$dev/work
rm -rf "$work"
git clone --quiet "$(cat "$dev/git-url")" "$work"
# One replica more than main has: a spec this cluster has not seen, so a new revision.
have=$(sed -n 's/^  replicas: \([0-9]*\)$/\1/p' "$work/deploy/notes/app.yaml" | head -1)
want=$(( have >= 100 ? 2 : have + 1 ))
branch=winky/feat-notes-replicas-$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')
git -C "$work" checkout --quiet -b "$branch"
sed -i "s/^  replicas: [0-9]*$/  replicas: $want/" "$work/deploy/notes/app.yaml"
git -C "$work" -c user.name="$agent" -c user.email=agent@winky.invalid commit --quiet -am "feat(notes): $want replicas"
echo "  \$ git push origin $branch"
git -C "$work" push --quiet origin "$branch" 2>&1 | sed 's/^/  /; s/[[:space:]]*$//'
echo "  \$ winky-dev github open $dev --branch $branch --as '$agent'"
opened=$("${github[@]}" open "$dev" --branch "$branch" --as "$agent" --title "feat(notes): $want replicas")
echo "$opened" | sed 's/^/  /'
pr=$(echo "$opened" | sed -n 's/^opened pull request #\([0-9]*\).*/\1/p')
# The operator answers a pull request with a plan: what merging it would do.
for _ in $(seq 1 40); do
  "${github[@]}" comments "$dev" "$pr" | grep -q 'would' && break
  sleep 0.25
done
echo "  the operator's comments on #$pr:"
"${github[@]}" comments "$dev" "$pr" | sed 's/^/    /'

echo
echo "== $merger merges it: the push webhook applies the merge at once"
echo "  \$ winky-dev github merge $dev --pr $pr --as $merger"
started=$(date +%s%N)
"${github[@]}" merge "$dev" --pr "$pr" --as "$merger" | sed 's/^/  /; s/[[:space:]]*$//'
after=$(git ls-remote "$(cat "$dev/git-url")" refs/heads/main | cut -f1)
for _ in $(seq 1 100); do
  [ "$("${k[@]}" get gitsource examples -n winky-system -o jsonpath='{.status.lastAppliedCommit}')" = "$after" ] && break
  sleep 0.05
done
echo "  applied ${after:0:12} in $(( ($(date +%s%N) - started) / 1000000 )) ms: notes now wants $("${k[@]}" get app notes -n notes -o jsonpath='{.spec.replicas}') replicas"
for _ in $(seq 1 40); do
  [ "$("${k[@]}" get app notes -n notes -o jsonpath='{.status.revision.gitCommit}')" = "$after" ] && break
  sleep 0.25
done
rev=$(revision)
echo "  a new revision, $rev: its emulator checks, then preview, then staging waits for an approval"
wait_phase preview "$rev" 60 Promoted
wait_phase staging "$rev" 10 AwaitingApproval
"${k[@]}" get promotions -n notes
"${k[@]}" get events -n winky-system --field-selector involvedObject.name=examples

echo
echo "== the approval: $approver, an approver of the default policy, comments /approve on #$pr"
echo "  \$ target/debug/winky-dev github comment $dev $pr --as $approver /approve"
"${github[@]}" comment "$dev" "$pr" --as "$approver" /approve | sed 's/^/  /'
for _ in $(seq 1 80); do
  [ "$("${k[@]}" get promotion "notes-staging-$rev" -n notes -o jsonpath='{.status.gates[?(@.name=="approvals")].state}')" = Passed ] && break
  sleep 0.25
done
"${k[@]}" get promotion "notes-staging-$rev" -n notes \
  -o jsonpath='  notes-staging-{.spec.revision.id}: {.status.phase}{range .status.gates[*]}, {.name} {.state} ({.evidence}){end}{"\n"}'
reply_to() { # the operator's reply to the comments of $1 on #$pr
  "${github[@]}" comments "$dev" "$pr" | awk -v who="   @$1" '/^── /{block=$0; keep=0; next} $0 == who {keep=1; print "    " block} keep {print "    " $0}'
}
echo "  the operator's reply:"
reply_to "$approver"
echo
echo "== staging is not autoPromote in the default policy: /promote staging moves it"
echo "  \$ target/debug/winky-dev github comment $dev $pr --as carol '/promote staging'"
started=$(date +%s%N)
"${github[@]}" comment "$dev" "$pr" --as carol /promote staging | sed 's/^/  /'
wait_phase staging "$rev" 20 Promoted
echo "  staging promoted in $(( ($(date +%s%N) - started) / 1000000 )) ms"
"${k[@]}" get promotions -n notes
for _ in $(seq 1 40); do
  "${github[@]}" comments "$dev" "$pr" | grep -q "^   @carol" && break
  sleep 0.25
done
echo "  the operator's reply:"
reply_to carol
"${k[@]}" get app notes -n notes -o jsonpath='{range .status.stages[*]}  {.name}: namespace {.namespace}, revision {.revision}{"\n"}{end}'
cat <<MSG

The control plane, the operator, the container engine and the local GitHub
keep running. No node runs pods here, so the App stays Progressing (its pods
are created, admitted under Pod Security "restricted", and wait for a node);
the emulator ran its checks in podman containers instead.

The GitSource applies only what a person merged through a pull request on
the local GitHub ($(cat "$dev/github-url"), the GitHub double of the tests;
$dev/github.log has every request the operator made to it). Act on it as
anyone: $merger merges, ${approver} and carol approve (the approvers winky-dev
gives the default policy here); agents and a pull request's author never approve.

  export KUBECONFIG=$PWD/$dev/kubeconfig
  $dev/kubectl get winky -A
  target/debug/winky status notes -n notes              # the pipeline, who may approve
  git clone \$(cat $dev/git-url) work && cd work          # a branch: edit, commit, git push origin <branch>
  target/debug/winky-dev github merge $dev --branch <branch> --as $merger       # a pull request, merged: applied
  target/debug/winky-dev github comment $dev <pr> --as carol "/promote staging"  # ChatOps: /approve, /hold, ...
  target/debug/winky-dev github comments $dev <pr>                              # the operator's replies
  target/debug/winky emulate -f examples/shop --engine $engine --output json

Stop everything with: make down
MSG
