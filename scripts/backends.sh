#!/usr/bin/env bash
# Says which backends the test run will exercise. Under CI=true both must be reachable.
set -u
db_url=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
nats_url=${TEST_NATS_URL:-nats://127.0.0.1:4222}
hostport() { echo "$1" | sed -E 's#^[a-z]+://([^@/]*@)?([^/?]*).*#\2#'; }
reachable() { local hp; hp=$(hostport "$1"); (exec 3<>"/dev/tcp/${hp%:*}/${hp##*:}") 2>/dev/null; }
echo "test backends: sqlite+inproc (always)"
if reachable "$db_url" && reachable "$nats_url"; then
  echo "test backends: postgres+nats ($(hostport "$db_url"), $(hostport "$nats_url"))"
elif [ "${CI:-}" = "true" ]; then
  echo "test backends: postgres+nats UNREACHABLE at $(hostport "$db_url") / $(hostport "$nats_url") and CI=true: failing" >&2
  exit 1
else
  echo "test backends: postgres+nats unreachable: those tests report SKIPPED and pass (set CI=true to make this fail)"
fi
