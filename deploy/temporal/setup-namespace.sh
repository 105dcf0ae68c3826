#!/bin/sh
# The namespace cmk uses, and the search attributes its workflows set (workflows/messages.ts,
# SEARCH_ATTRIBUTE_REGISTRATION; test/compose.test.ts fails when the two lists differ). Safe to run on every start.
# Run by the temporal-setup service of docker-compose.yml (temporalio/admin-tools, which has the `temporal` CLI).
set -eu
address="${TEMPORAL_ADDRESS:?TEMPORAL_ADDRESS is required}"
namespace="${TEMPORAL_NAMESPACE:-default}"

attempt=1
until temporal operator cluster health --address "$address" >/dev/null 2>&1; do
  [ "$attempt" -lt 60 ] || { echo "cmk: Temporal at $address is not healthy" >&2; exit 1; }
  attempt=$((attempt + 1))
  sleep 2
done

if temporal operator namespace describe --address "$address" --namespace "$namespace" >/dev/null 2>&1; then
  echo "cmk: namespace $namespace exists"
else
  temporal operator namespace create --address "$address" --namespace "$namespace" --retention 720h
fi

# name type, one a line
while read -r name type; do
  [ -n "$name" ] || continue
  attempt=1
  until temporal operator search-attribute list --address "$address" --namespace "$namespace" --output json | grep -q "\"$name\""; do
    temporal operator search-attribute create --address "$address" --namespace "$namespace" --name "$name" --type "$type" || true
    [ "$attempt" -lt 30 ] || { echo "cmk: cannot register search attribute $name" >&2; exit 1; }
    attempt=$((attempt + 1))
    sleep 2
  done
done <<'ATTRIBUTES'
CmkTenant Keyword
CmkKeyStates KeywordList
CmkActiveKeyThumbprints KeywordList
CmkEnvironmentCount Int
CmkLockedEnvironmentCount Int
CmkReprotectionRemaining Int
CmkReprotectionRefused KeywordList
CmkNextDeletionAt Datetime
CmkLockEmbargoEndsAt Datetime
CmkKeyChangeAllowedAt Datetime
CmkRollbackUntil Keyword
ATTRIBUTES
echo "cmk: namespace $namespace ready with cmk's search attributes"
