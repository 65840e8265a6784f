#!/usr/bin/env bash
# Install what the integration tests need outside Python:
#   - Debian packages: slurm-wlm munge openssh-server chromium chromium-driver sudo procps iproute2
#     (plus nodejs/npm when npm is missing); for the apps (tests/test_apps_hub.py): the VNC
#     desktop (tigervnc-standalone-server, websockify, novnc, xauth, twm, xterm, xfonts-base,
#     xfonts-75dpi), Xpra with its HTML5 client (xpra, xvfb) and xdpyinfo (x11-utils) for the X
#     cookie checks; Son of Grid Engine (gridengine-master, gridengine-exec, gridengine-client) for
#     the Grid Engine tests (tests/support/sge_cell.py); PostgreSQL (postgresql, the server of
#     Debian's supported version) for the session store's tests (tests/support/postgres.py)
#   - configurable-http-proxy (npm) into $REPO/node_modules
#
# The PostgreSQL driver (psycopg) is a Python package: the venv's `test` extra brings it.
#
# Idempotent: apt runs only when a needed binary is missing, npm only when
# node_modules/.bin/configurable-http-proxy is missing. Installing packages needs root on
# Debian; anywhere else this only reports what is missing and exits 1.
#
# Services are NOT started: while apt runs, a temporary /usr/sbin/policy-rc.d (exit 101)
# keeps the packages' init scripts from starting munged/sshd/slurmd/sge_qmaster/sge_execd/postgres;
# the tests start the daemons they need themselves (tests/support/slurm_cluster.py, sge_cell.py,
# postgres.py).
#
# Grid Engine's debconf questions (configure automatically? cell name, master host) are
# preseeded before a first install, so apt never prompts whatever the debconf frontend: the
# Debian default cell (SGE_ROOT=/var/lib/gridengine, SGE_CELL=default) is created with this
# host as its master. The tests do not use that cell; they build a private one.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

APT_PACKAGES=(slurm-wlm munge openssh-server chromium chromium-driver sudo procps iproute2
  tigervnc-standalone-server websockify novnc xauth twm xterm xfonts-base xfonts-75dpi xpra xvfb
  x11-utils gridengine-master gridengine-exec gridengine-client postgresql)
# binary -> package providing it
declare -A BINARY_PACKAGE=(
  [sbatch]=slurm-wlm
  [slurmctld]=slurm-wlm
  [slurmd]=slurm-wlm
  [munged]=munge
  [sshd]=openssh-server
  [chromium]=chromium
  [chromedriver]=chromium-driver
  [sudo]=sudo
  [ps]=procps
  [ss]=iproute2
  [Xvnc]=tigervnc-standalone-server
  [websockify]=websockify
  [xauth]=xauth
  [twm]=twm
  [xterm]=xterm
  [xpra]=xpra
  [Xvfb]=xvfb
  [xdpyinfo]=x11-utils
  [qsub]=gridengine-client
  [sge_qmaster]=gridengine-master
  [sge_execd]=gridengine-exec
)
# file -> package, for packages without a binary
declare -A FILE_PACKAGE=(
  [/usr/share/novnc/vnc.html]=novnc
  [/usr/share/xpra/www/index.html]=xpra
  [/usr/share/fonts/X11/misc/fonts.dir]=xfonts-base
  # twm's title font (without it twm exits in a UTF-8 locale)
  [/usr/share/fonts/X11/75dpi/fonts.dir]=xfonts-75dpi
)
# glob -> package, for programs outside PATH in a versioned directory (PostgreSQL's server
# programs are in /usr/lib/postgresql/<major>/bin; /usr/bin only has postgresql-common's wrappers)
declare -A GLOB_PACKAGE=(
  ['/usr/lib/postgresql/*/bin/initdb']=postgresql
  ['/usr/lib/postgresql/*/bin/postgres']=postgresql
)
CHP="$REPO/node_modules/.bin/configurable-http-proxy"
CHP_SPEC='configurable-http-proxy@^4.6'

log() { printf '[install-system] %s\n' "$*"; }
have() { command -v "$1" >/dev/null 2>&1; }

is_root() { [ "$(id -u)" -eq 0 ]; }
is_debian() { [ -r /etc/debian_version ] && have apt-get && have dpkg; }

missing_binaries() {
  local b
  for b in "${!BINARY_PACKAGE[@]}"; do
    have "$b" || printf '%s\n' "$b"
  done | sort
  for f in "${!FILE_PACKAGE[@]}"; do
    [ -e "$f" ] || printf '%s\n' "$f"
  done | sort
  for g in "${!GLOB_PACKAGE[@]}"; do
    compgen -G "$g" >/dev/null || printf '%s\n' "$g"
  done | sort
}

# ---- apt ----------------------------------------------------------------------------------
preseed_gridengine() {
  # Answers for the gridengine packages' debconf questions (asked at priority high by
  # gridengine-common/-client/-master/-exec); only before a first install, so an existing
  # installation's answers are never overwritten. debconf-set-selections marks them seen.
  if dpkg-query -W -f='${Status}' gridengine-common 2>/dev/null | grep -q 'ok installed'; then
    return 0
  fi
  local master
  master="$(hostname 2>/dev/null || echo localhost)"
  log "debconf: preseeding gridengine (configure automatically, cell default, master $master)"
  debconf-set-selections <<EOF
gridengine-common shared/gridengineconfig boolean true
gridengine-common shared/gridenginecell string default
gridengine-common shared/gridenginemaster string $master
EOF
}

apt_install() {
  # $@: packages
  local created_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\n# temporary, from .ci/install-system.sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    created_policy=1
  fi
  if [ "$created_policy" = 1 ]; then
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  if [ "${APT_UPDATED:-0}" != 1 ]; then
    log "apt-get update"
    apt-get update -q
    APT_UPDATED=1
  fi
  case " $* " in *" gridengine-"*) preseed_gridengine ;; esac
  log "apt-get install -y --no-install-recommends $*"
  apt-get install -y -q --no-install-recommends "$@"
  if [ "$created_policy" = 1 ]; then
    rm -f /usr/sbin/policy-rc.d
  fi
  trap - EXIT
}

mapfile -t MISSING < <(missing_binaries)
NEED_NPM=0
if [ ! -x "$CHP" ] && ! have npm; then
  NEED_NPM=1
fi

if [ "${#MISSING[@]}" -gt 0 ] || [ "$NEED_NPM" = 1 ]; then
  if ! is_root || ! is_debian; then
    why=()
    is_root || why+=("not root")
    is_debian || why+=("not Debian (no /etc/debian_version + apt-get)")
    {
      reasons="$(printf '%s; ' "${why[@]}")"
      echo "install-system: cannot install the missing pieces here: ${reasons%; }."
      if [ "${#MISSING[@]}" -gt 0 ]; then
        echo "  missing binaries:"
        for b in "${MISSING[@]}"; do
          echo "    $b (Debian package ${BINARY_PACKAGE[$b]:-${FILE_PACKAGE[$b]:-${GLOB_PACKAGE[$b]:-?}}})"
        done
      fi
      if [ "$NEED_NPM" = 1 ]; then
        echo "  missing: npm (needed to install $CHP_SPEC into $REPO/node_modules)"
      fi
      echo "  Run this script as root on Debian, or install them yourself."
    } >&2
    exit 1
  fi
  packages=("${APT_PACKAGES[@]}")
  if [ "$NEED_NPM" = 1 ]; then
    have node || packages+=(nodejs)
    packages+=(npm)
  fi
  apt_install "${packages[@]}"
  mapfile -t STILL < <(missing_binaries)
  if [ "${#STILL[@]}" -gt 0 ]; then
    echo "install-system: still missing after apt-get install: ${STILL[*]}" >&2
    exit 1
  fi
else
  log "system packages: all present (${!BINARY_PACKAGE[*]})"
fi

# ---- configurable-http-proxy -----------------------------------------------------------------
if [ -x "$CHP" ]; then
  log "configurable-http-proxy: present ($CHP)"
else
  if ! have npm; then
    echo "install-system: npm not found; cannot install $CHP_SPEC" >&2
    exit 1
  fi
  log "npm install $CHP_SPEC (in $REPO)"
  (cd "$REPO" && npm install --prefix "$REPO" --no-save --no-audit --no-fund "$CHP_SPEC")
  if [ ! -x "$CHP" ]; then
    echo "install-system: npm ran but $CHP is missing" >&2
    exit 1
  fi
fi

log "versions:"
{
  # (sbatch --version needs a slurm.conf; the daemons' -V does not)
  slurmd -V 2>/dev/null || echo 'slurmd -V failed'
  munged --version 2>&1 | head -n1 || true
  chromium --version 2>/dev/null || echo 'chromium --version failed'
  chromedriver --version 2>/dev/null | head -n1 || echo 'chromedriver --version failed'
  # (qstat -help needs a configured cell; the package version does not)
  dpkg-query -W -f='gridengine ${Version}\n' gridengine-master 2>/dev/null ||
    echo 'gridengine: not installed'
  dpkg-query -W -f='postgresql ${Version}\n' postgresql 2>/dev/null || echo 'postgresql: not installed'
  printf 'node %s, configurable-http-proxy %s\n' "$(node --version 2>/dev/null || echo '?')" \
    "$("$CHP" --version 2>/dev/null || echo '?')"
} | sed 's/^/    /'
log "done"
