#!/bin/sh
# Sends a shell command's output to a flowcast run, line by line, as the run's step log.
# Browsers watching the run see each line as a StepLogEvent (docs/redis.md, "External producers").
#
#   RUN_ID=<run id> STEP=<step name> ./tail-to-flowcast.sh make build
#
# Needs only redis-cli. REDIS_URL (default redis://127.0.0.1:6379) and FLOWCAST_PREFIX
# (the servers' keyPrefix, default "flowcast:") say where the ingest stream is.
set -eu
: "${RUN_ID:?set RUN_ID to the run to write to}"
: "${STEP:?set STEP to the step name}"
REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
STREAM="${FLOWCAST_PREFIX:-flowcast:}ingest"

send() { # send <field> <value> ...
  redis-cli -u "$REDIS_URL" XADD "$STREAM" MAXLEN '~' 100000 '*' run_id "$RUN_ID" step "$STEP" "$@" >/dev/null
}

if [ "$#" -eq 0 ]; then
  # No command: forward standard input.
  while IFS= read -r line; do send type log message "$line"; done
  exit 0
fi

# The command's exit status, through the pipe (plain sh has no pipefail).
status_file=$(mktemp)
trap 'rm -f "$status_file"' EXIT
{ if "$@" 2>&1; then s=0; else s=$?; fi; echo "$s" >"$status_file"; } | while IFS= read -r line; do send type log message "$line"; done
status=$(cat "$status_file")
send type progress progress 1 message "exit $status: $*"
exit "$status"
