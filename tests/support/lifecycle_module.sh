#!/bin/sh
# A tiny module for the runtime lifecycle tests, for busybox sh (host process or busybox container).
#
# It takes its configuration like the scoring module: EDGEFLEET_* environment (docker runtime) or
# the same options on the command line (process runtime; unknown --options are skipped). It writes
# the status file, serves $STATUS_DIR/www over HTTP with busybox httpd (so /v2/health/ready is a
# file), and logs one line naming its model file's contents.
#
# Test controls:
#   LIFECYCLE_EXIT_CODE=N   exit at once with N (78: Unschedulable, else Failed)
#   $SOURCE_DIR/control     "exit N": exit with N;  "unhealthy": stop answering /v2/health/ready

MODEL_DIR=${EDGEFLEET_MODEL_DIR:-}
SOURCE_DIR=${EDGEFLEET_SOURCE_DIR:-}
PORT=${EDGEFLEET_PORT:-}
HOST=${EDGEFLEET_HOST:-127.0.0.1}
STATUS_FILE=${EDGEFLEET_STATUS_FILE:-}

while [ $# -gt 0 ]; do
    case "$1" in
        --model-dir) MODEL_DIR=$2 ;;
        --source-dir) SOURCE_DIR=$2 ;;
        --port) PORT=$2 ;;
        --host) HOST=$2 ;;
        --status-file) STATUS_FILE=$2 ;;
        --accelerator-required) shift; continue ;;
        --*) ;;
        *) shift; continue ;;
    esac
    [ $# -ge 2 ] && shift 2 || shift
done

if [ -z "$PORT" ] || [ -z "$STATUS_FILE" ]; then
    echo "lifecycle module: no port or status file given" >&2
    exit 2
fi

status() {  # state, message
    printf '{"state": "%s", "message": "%s", "pid": %s, "port": %s}\n' "$1" "$2" $$ "$PORT" >"$STATUS_FILE.tmp" &&
        busybox mv -f "$STATUS_FILE.tmp" "$STATUS_FILE"
}

status Starting "starting"
if [ -n "${LIFECYCLE_EXIT_CODE:-}" ]; then
    if [ "$LIFECYCLE_EXIT_CODE" = 78 ]; then state=Unschedulable; else state=Failed; fi
    status "$state" "told to exit with $LIFECYCLE_EXIT_CODE"
    echo "lifecycle module: exiting with $LIFECYCLE_EXIT_CODE as told"
    exit "$LIFECYCLE_EXIT_CODE"
fi

WWW="$(busybox dirname "$STATUS_FILE")/www"
busybox mkdir -p "$WWW/v2/health"
echo ready >"$WWW/v2/health/ready"
busybox httpd -f -p "$HOST:$PORT" -h "$WWW" &
HTTPD=$!

stop_now() {
    busybox kill "$HTTPD" 2>/dev/null
    echo "lifecycle module: stopping"
    exit 0
}
trap stop_now TERM INT

until busybox wget -q -O /dev/null "http://$HOST:$PORT/v2/health/ready" 2>/dev/null; do
    if ! busybox kill -0 "$HTTPD" 2>/dev/null; then
        status Failed "httpd could not listen on $HOST:$PORT"
        exit 1
    fi
    busybox sleep 0.1
done
status Ready "serving on $HOST:$PORT"
echo "lifecycle module: ready on $HOST:$PORT, model $(busybox cat "$MODEL_DIR/model.bin" 2>&1)"

while :; do
    if [ -f "$SOURCE_DIR/control" ]; then
        read -r command argument <"$SOURCE_DIR/control"
        case "$command" in
            exit)
                busybox kill "$HTTPD" 2>/dev/null
                status Failed "told to exit with $argument"
                echo "lifecycle module: exiting with $argument as told"
                exit "$argument"
                ;;
            unhealthy) busybox rm -f "$WWW/v2/health/ready" ;;
        esac
    fi
    if ! busybox kill -0 "$HTTPD" 2>/dev/null; then
        status Failed "httpd died"
        exit 1
    fi
    # sleep in the background so a TERM runs the trap at once instead of after the sleep
    busybox sleep 0.2 &
    wait $!
done
