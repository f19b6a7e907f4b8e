#!/usr/bin/env bash
# Applies the notes example to the running local control plane, shows what the
# operator created and the App's conditions as they change, and leaves it all running.
set -euo pipefail
dev=${1:-.dev}
k=("$dev/kubectl" --kubeconfig "$dev/kubeconfig")

echo "== kubectl apply -R -f examples/notes"
"${k[@]}" apply -R -f examples/notes

echo
echo "== App conditions as they change (10 s)"
timeout 10 "${k[@]}" get apps.winky.dev notes -n notes --watch \
  -o jsonpath='{.metadata.name} rev={.status.revision.id}{range .status.conditions[*]} {.type}={.status}({.reason}){end}{"\n"}' || true

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

The control plane and the operator keep running. No node runs pods here, so the
App stays Progressing (its pods are created, admitted under Pod Security
"restricted", and wait for a node).

  export KUBECONFIG=$PWD/$dev/kubeconfig
  $dev/kubectl get winky -A
  $dev/kubectl describe app notes -n notes

Stop everything with: make down
MSG
