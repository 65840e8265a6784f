#!/bin/bash
#SBATCH --job-name=pw-alice
#SBATCH --output=/home/alice/.pw_spawner/jobs/pw-alice/job.out
#SBATCH --open-mode=append
#SBATCH --partition=short
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=4
#SBATCH --mem=16384M
#SBATCH --time=02:00:00
#
# pw_spawner job pw-alice
#   profile:     cpu-short (4c, 16G, 02:00:00)
#   environment: modules-py36
#   app:         jupyter
# The job writes its state to service.json in its job directory; the hub reads it.

# No `set -eu`: module and conda activation scripts use unset variables and failing commands;
# every step below checks its own result and reports it through service.json instead.
set -o pipefail
umask 077

PW_JOB_DIR=/home/alice/.pw_spawner/jobs/pw-alice
PW_JOB_ID="${SLURM_JOB_ID:-${PBS_JOBID:-${PW_LOCAL_JOB_ID:-$$}}}"
PW_BIND_IP=0.0.0.0
PW_SLUG=lab
PW_URL=/me
PW_HOST="$PW_BIND_IP"
if [ "$PW_HOST" = 0.0.0.0 ]; then PW_HOST="$(hostname)"; fi
PW_PORT=""
PW_LOG="$PW_JOB_DIR/job.out"
mkdir -p "$PW_JOB_DIR" && chmod 0700 "$PW_JOB_DIR"
# The scheduler starts jobs in the submitting directory (the hub's); apps start from home.
cd "$HOME" || cd /

# service.json is written whole and renamed into place, so the hub never reads half a file.
pw_json() {
    local s="$1"
    s="${s//\\/\\\\}"; s="${s//\"/\\\"}"; s="${s//$'\n'/\\n}"; s="${s//$'\r'/}"; s="${s//$'\t'/\\t}"
    printf '"%s"' "$s"
}
pw_status() {
    local tmp="$PW_JOB_DIR/.service.json.$$"
    printf '{"JOB_STATUS": %s, "URL": %s, "PORT": %s, "SLUG": %s, "HOST": %s, "ERROR_MESSAGE": %s, "JOB_ID": %s}\n' \
        "$(pw_json "$1")" "$(pw_json "$PW_URL")" "${PW_PORT:-null}" "$(pw_json "$PW_SLUG")" \
        "$(pw_json "$PW_HOST")" "$(pw_json "${2:-}")" "$(pw_json "$PW_JOB_ID")" >"$tmp" \
        && mv -f "$tmp" "$PW_JOB_DIR/service.json"
}
pw_fail() {
    echo "pw_spawner: $1" >&2
    pw_status FAILED "$1"
    exit 1
}
pw_status STARTING "setting up the environment"

# Logging was asked for on the spawn page.
PW_LOG="$HOME/pw_spawner_${PW_JOB_ID}.log"
exec >>"$PW_LOG" 2>&1
echo "pw_spawner: job $PW_JOB_ID on $(hostname) at $(date)"

# ---- site setup (the hub's setup_lines, as written)
source /etc/profile.d/modules.sh

# ---- environment: env modules (Python 3.6.6)
module load python/3.6.6 jupyterlab \
    || pw_fail 'module load failed: python/3.6.6 jupyterlab'

# ---- environment variables from the spawn page
export OMP_NUM_THREADS=4
export GREETING='it'"'"'s a $(test)'

# ---- from the hub (contains the server's API token: this script is never logged)
export JUPYTERHUB_API_TOKEN=TOKEN
export JUPYTERHUB_USER=alice
export JUPYTERHUB_SERVICE_PREFIX=/user/alice/

# ---- app: jupyter
PW_PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])')" \
    || pw_fail "python3 is not available to pick a port"
export JUPYTERHUB_SERVICE_URL="http://${PW_BIND_IP}:${PW_PORT}${JUPYTERHUB_SERVICE_PREFIX:-/}"
command -v jupyterhub-singleuser >/dev/null \
    || pw_fail 'jupyterhub-singleuser was not found in this environment'
pw_status STARTING "starting JupyterLab"

jupyterhub-singleuser --SingleUserNotebookApp.default_url=/lab --ip="$PW_BIND_IP" --port="$PW_PORT" &
PW_APP_PID=$!
# Cancelling the job (scancel, qdel, stop) signals this shell: pass it on to the app.
trap 'kill -TERM "$PW_APP_PID" 2>/dev/null; wait "$PW_APP_PID"; pw_status CANCELLED "stopped"; exit 0' TERM INT HUP

PW_CHECK_HOST="$PW_BIND_IP"
if [ "$PW_CHECK_HOST" = 0.0.0.0 ]; then PW_CHECK_HOST=127.0.0.1; fi
PW_WAITED=0
until (exec 3<>"/dev/tcp/$PW_CHECK_HOST/$PW_PORT") 2>/dev/null; do
    kill -0 "$PW_APP_PID" 2>/dev/null || { wait "$PW_APP_PID"; pw_fail "JupyterLab exited with status $? before it listened on port $PW_PORT (its output: $PW_LOG)"; }
    PW_WAITED=$((PW_WAITED + 1))
    [ "$PW_WAITED" -le 1500 ] || pw_fail "JupyterLab did not listen on port $PW_PORT within 300 s"
    sleep 0.2
done
pw_status RUNNING ""

wait "$PW_APP_PID"
PW_RC=$?
if [ "$PW_RC" -eq 0 ]; then
    pw_status COMPLETED ""
else
    pw_status FAILED "JupyterLab exited with status $PW_RC (its output: $PW_LOG)"
fi
exit "$PW_RC"
