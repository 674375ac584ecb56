#!/usr/bin/env bash
# Production-mode smoke test: every service as its own process (`connectability serve`) on
# Postgres and NATS JetStream, wired by URL as in a deployment, then one connection through
# gRPC that must reach the notification inbox and mail folder. NATS is its own, started with
# deploy/nats/nats.conf (a user and permissions per service). Needs grpcurl and nats-server.
set -euo pipefail
BIN=${BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/connectability/target}/debug/connectability}
PG=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
PG_BASE=${PG%/*}
RUN=smoke$(date +%s)$$
WORK=$(mktemp -d)
export AUTH_HS256_SECRET="smoke-$RUN" AUTH_ALLOW_HS256=true EVENTS_PREFIX=$RUN METRICS_ADDR=off LOG_FORMAT=json SHUTDOWN_GRACE_SECS=0
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for s in dir cm dwg rfi sub ntf; do psql "$PG" -qc "DROP DATABASE IF EXISTS ${RUN}_$s WITH (FORCE)" >/dev/null 2>&1 || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "smoke: FAIL: $*" >&2; for f in "$WORK"/*.log; do echo "--- $f" >&2; tail -5 "$f" >&2; done; exit 1; }

# The NATS user of service $1's password variable (NATS_DRAWINGS_SYNC_PASSWORD, …).
password_var() { echo "NATS_$(echo "$1" | tr 'a-z-' 'A-Z_')_PASSWORD"; }
start() { # name db port extra-env...
  local name=$1 db=$2 port=$3; shift 3
  local pw; pw=$(password_var "$name")
  psql "$PG" -qc "CREATE DATABASE ${RUN}_$db" >/dev/null
  DATABASE_URL="$PG_BASE/${RUN}_$db" "$BIN" migrate "$name" >/dev/null
  env DATABASE_URL="$PG_BASE/${RUN}_$db" GRPC_ADDR=127.0.0.1:$port EVENTS_PASSWORD="${!pw}" "$@" "$BIN" serve "$name" >"$WORK/$name.log" 2>&1 &
  pids+=($!)
}
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# NATS of its own, with the shipped configuration: a user and fresh password per service.
for u in directory connection-manager drawings-sync rfi-sync submittal-sync notification admin; do
  # NATS parses the variable as a config value: it must start with a letter.
  export "$(password_var $u)=p$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
done
P_NATS=$(port)
nats-server -c deploy/nats/nats.conf -a 127.0.0.1 -p "$P_NATS" -js -sd "$WORK/nats" >"$WORK/nats.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$P_NATS") 2>/dev/null && break; sleep 0.1; done
export EVENTS_URL=nats://127.0.0.1:$P_NATS
P_DIR=$(port); P_CM=$(port); P_DWG=$(port); P_RFI=$(port); P_SUB=$(port); P_NTF=$(port)
start directory dir "$P_DIR"
start connection-manager cm "$P_CM" DIRECTORY_URL=http://127.0.0.1:$P_DIR DRAWINGS_URL=http://127.0.0.1:$P_DWG
start drawings-sync dwg "$P_DWG" DIRECTORY_URL=http://127.0.0.1:$P_DIR CONNECTIONS_URL=http://127.0.0.1:$P_CM BLOBS_URL=file://$WORK/blobs
start rfi-sync rfi "$P_RFI" DIRECTORY_URL=http://127.0.0.1:$P_DIR CONNECTIONS_URL=http://127.0.0.1:$P_CM DRAWINGS_URL=http://127.0.0.1:$P_DWG BLOBS_URL=file://$WORK/blobs
start submittal-sync sub "$P_SUB" DIRECTORY_URL=http://127.0.0.1:$P_DIR CONNECTIONS_URL=http://127.0.0.1:$P_CM BLOBS_URL=file://$WORK/blobs
start notification ntf "$P_NTF" DIRECTORY_URL=http://127.0.0.1:$P_DIR MAIL_DIR=$WORK/mail

for p in $P_DIR $P_CM $P_DWG $P_RFI $P_SUB $P_NTF; do
  for _ in $(seq 1 100); do
    grpcurl -plaintext 127.0.0.1:$p grpc.health.v1.Health/Check 2>/dev/null | grep -q SERVING && break
    sleep 0.1
  done
  grpcurl -plaintext 127.0.0.1:$p grpc.health.v1.Health/Check 2>/dev/null | grep -q SERVING || fail "port $p not serving"
done

call() { local token=$1 port=$2 method=$3 body=$4; grpcurl -plaintext -H "authorization: Bearer $token" -d "$body" 127.0.0.1:$port "$method"; }
id() { grep "\"$1\"" | head -1 | cut -d'"' -f4; }
D=connectability.directory.v1.DirectoryService
OP=$("$BIN" token --operator)
GC=$(call "$OP" $P_DIR $D/CreateCompany '{"name":"GC","storage_location":"us-east"}' | id id)
SUB=$(call "$OP" $P_DIR $D/CreateCompany '{"name":"Sub","storage_location":"us-east"}' | id id)
U1=$(call "$OP" $P_DIR $D/CreateUser "{\"company_id\":\"$GC\",\"display_name\":\"G\",\"email\":\"g@$RUN.example\"}" | id id)
U2=$(call "$OP" $P_DIR $D/CreateUser "{\"company_id\":\"$SUB\",\"display_name\":\"R\",\"email\":\"r@$RUN.example\"}" | id id)
P1=$(call "$OP" $P_DIR $D/CreateProject "{\"company_id\":\"$GC\",\"name\":\"Tower\"}" | id id)
P2=$(call "$OP" $P_DIR $D/CreateProject "{\"company_id\":\"$SUB\",\"name\":\"Tower E\"}" | id id)
ADMIN='{"connection_manager":"PERMISSION_LEVEL_ADMIN","drawings":"PERMISSION_LEVEL_ADMIN","rfis":"PERMISSION_LEVEL_ADMIN","submittals":"PERMISSION_LEVEL_ADMIN"}'
call "$OP" $P_DIR $D/AddProjectMember "{\"project_id\":\"$P1\",\"user_id\":\"$U1\",\"permissions\":$ADMIN}" >/dev/null
call "$OP" $P_DIR $D/AddProjectMember "{\"project_id\":\"$P2\",\"user_id\":\"$U2\",\"permissions\":$ADMIN}" >/dev/null
call "$OP" $P_DIR $D/AddProjectMember "{\"project_id\":\"$P1\",\"user_id\":\"$U2\",\"permissions\":{\"drawings\":\"PERMISSION_LEVEL_READ_ONLY\",\"rfis\":\"PERMISSION_LEVEL_READ_ONLY\",\"submittals\":\"PERMISSION_LEVEL_READ_ONLY\"}}" >/dev/null
T1=$("$BIN" token --user "$U1"); T2=$("$BIN" token --user "$U2")
call "$T2" $P_CM connectability.connections.v1.ConnectionService/RequestConnection \
  "{\"downstream_project_id\":\"$P2\",\"upstream_project_id\":\"$P1\",\"features\":[\"FEATURE_DRAWINGS\",\"FEATURE_RFIS\",\"FEATURE_SUBMITTALS\"]}" \
  | grep -q CONNECTION_STATUS_ACTIVE || fail "connection not active"
for _ in $(seq 1 100); do
  call "$T1" $P_NTF connectability.notifications.v1.NotificationService/ListNotifications '{}' 2>/dev/null \
    | grep -q NOTIFICATION_KIND_CONNECTION_CREATED && ls "$WORK/mail"/*.eml >/dev/null 2>&1 && break
  sleep 0.2
done
call "$T1" $P_NTF connectability.notifications.v1.NotificationService/ListNotifications '{}' \
  | grep -q NOTIFICATION_KIND_CONNECTION_CREATED || fail "no notification reached the upstream admin"
ls "$WORK/mail"/*.eml >/dev/null 2>&1 || fail "no email written"
# An RFI closed upstream arrives downstream as a connected copy with its cover sheet.
R=connectability.rfis.v1.RfiService
RFI=$(call "$T1" $P_RFI $R/CreateRfi "{\"project_id\":\"$P1\",\"subject\":\"Beam pocket\",\"question\":\"Lower it?\"}" | id id)
call "$T1" $P_RFI $R/CloseRfi "{\"id\":\"$RFI\"}" | grep -q RFI_STATUS_CLOSED || fail "RFI not closed"
for _ in $(seq 1 100); do
  call "$T2" $P_RFI $R/ListRfis "{\"project_id\":\"$P2\"}" 2>/dev/null | grep -q '"connected": true' && break
  sleep 0.2
done
call "$T2" $P_RFI $R/ListRfis "{\"project_id\":\"$P2\"}" | grep -q '"coverSheetFileId"' || fail "the closed RFI did not reach the downstream project"
# A submittal distributed with the sub's user as approver arrives downstream.
SB=connectability.submittals.v1.SubmittalService
SUBM=$(call "$T1" $P_SUB $SB/CreateSubmittal "{\"project_id\":\"$P1\",\"title\":\"Switchgear\",\"approver_ids\":[\"$U2\"]}" | id id)
call "$T1" $P_SUB $SB/DistributeSubmittal "{\"submittal_id\":\"$SUBM\",\"message\":\"for review\"}" | grep -q coverSheetFileId || fail "submittal not distributed"
for _ in $(seq 1 100); do
  call "$T2" $P_SUB $SB/ListSubmittals "{\"project_id\":\"$P2\"}" 2>/dev/null | grep -q '"connected": true' && break
  sleep 0.2
done
call "$T2" $P_SUB $SB/ListSubmittals "{\"project_id\":\"$P2\"}" | grep -q '"coverSheetFileId"' || fail "the distributed submittal did not reach the downstream project"
echo "smoke: production mode (6 processes, postgres+nats) ok: connection created, notified, emailed; RFI and submittal copied"
