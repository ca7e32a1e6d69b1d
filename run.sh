#!/usr/bin/env bash
# The single entry point of the README's quick start.
#
#   ./run.sh demo [--out DIR] [--set KEY=VALUE ...]   learn a real texture, then synthesize
#   ./run.sh test [pytest args]                       the test suite, from the repo root
#   ./run.sh stgconv ARGS...                          the CLI, inside the environment
#   ./run.sh python ARGS...                           python, inside the environment
#   ./run.sh shell                                    a shell with the environment active
#
# Every command first makes sure the environment exists: a virtual environment OUTSIDE the clone
# (so CI clones and worktrees share it and `git clean` never deletes it), keyed by a hash of
# pyproject.toml (so changed dependencies get a fresh one):
#   ${STGCONV_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/stgconv/venv-<sha256(pyproject.toml)[:12]>}
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CALLER_PWD="$PWD"

die() {
    echo "run.sh: error: $*" >&2
    exit 1
}

# A line on stderr that the command goes on after: where stderr is closed (2>&-) the failed
# write would end run.sh (set -e) before the command, without a word.
note() {
    echo "run.sh: $*" >&2 || true
}

usage() {
    sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

sha12() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | cut -c1-12
    else
        shasum -a 256 "$1" | cut -c1-12  # macOS
    fi
}

# A Python >= 3.10 that can create virtual environments ($PYTHON first, if set).
find_python() {
    local candidate
    for candidate in ${PYTHON:-} python3 python3.13 python3.12 python3.11 python3.10; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

# open3d (voxel I/O) loads libusb-1.0 at import time; Debian images often lack it.
ensure_libusb() {
    [ "$(uname -s)" = Linux ] || return 0
    local ldconfig
    ldconfig="$(command -v ldconfig || echo /sbin/ldconfig)"
    # grep without -q reads all input: with -q, ldconfig can die of SIGPIPE and pipefail
    # would report the library as missing.
    if "$ldconfig" -p 2>/dev/null | grep libusb-1.0.so.0 >/dev/null; then
        return 0
    fi
    if [ "$(id -u)" -ne 0 ]; then
        die "open3d needs the system library libusb-1.0 (libusb-1.0.so.0), which is missing.
Install it, then rerun:   sudo apt-get install libusb-1.0-0   (Debian/Ubuntu)
                          sudo dnf install libusb1            (Fedora)"
    fi
    command -v apt-get >/dev/null 2>&1 ||
        die "open3d needs libusb-1.0 (libusb-1.0.so.0); install it with your package manager"
    note "installing libusb-1.0-0 (needed by open3d) with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libusb-1.0-0 >/dev/null
}

ensure_venv() {
    local key lock busy=0
    key="$(sha12 "$ROOT/pyproject.toml")"
    if [ -z "${STGCONV_VENV:-}${XDG_CACHE_HOME:-}${HOME:-}" ]; then
        die "HOME is not set: set it, or STGCONV_VENV to the environment's folder"
    fi
    VENV="${STGCONV_VENV:-${XDG_CACHE_HOME:-${HOME:-}/.cache}/stgconv/venv-$key}"
    # Absolute: `test` runs from the repository root, where a relative path means another folder.
    VENV="$(absolute "$VENV")"
    export PIP_DISABLE_PIP_VERSION_CHECK=1
    # Two run.sh started together (benchmarks side by side, after another clone pointed the
    # environment elsewhere) would both install into it, and one pip fails on the files the
    # other is replacing. The lock is held only while installing, not while the command runs.
    # Beside the environment, not "$VENV.lock": a $STGCONV_VENV ending in / would put that
    # inside a folder not made yet.
    lock="$(dirname "$VENV")/$(basename "$VENV").lock"
    # Unlocked where it cannot lock, as before the lock: no flock(1) (macOS), a folder or lock
    # file it may not write (read-only, another user's), no locks (NFS without its lock manager).
    if command -v flock >/dev/null 2>&1 && mkdir -p "$(dirname "$VENV")" 2>/dev/null &&
        { exec 9>>"$lock"; } 2>/dev/null; then
        # 75 only where another run.sh holds the lock: flock's own failure (no locks on this
        # file system) leaves the install unlocked without a wait to announce.
        flock -n -E 75 9 2>/dev/null || busy=$?
        if [ "$busy" -eq 75 ]; then  # a first install takes minutes: say why it waits
            note "waiting for another run.sh installing into $VENV"
            flock 9 2>/dev/null || true
        fi
        install_if_needed "$key"
        exec 9>&-
    else
        install_if_needed "$key"
    fi
}

install_if_needed() {
    local key="$1" marker="$VENV/.stgconv-installed" python
    # The marker is written only after a complete install and holds the pyproject hash, so a
    # half-finished install (or a pinned $STGCONV_VENV whose pyproject changed) is redone.
    if [ ! -f "$marker" ] || [ "$(cat "$marker")" != "$key" ]; then
        if [ ! -x "$VENV/bin/python" ]; then
            python="$(find_python)" || die "no Python >= 3.10 found (tried \$PYTHON, python3, \
python3.13 ... python3.10); install one or set PYTHON=/path/to/python3"
            "$python" -c 'import ensurepip, venv' 2>/dev/null || die "$python cannot create \
virtual environments; install the venv module (Debian/Ubuntu: apt-get install python3-venv)"
            note "creating the environment $VENV (first run only; a few minutes)"
            mkdir -p "$(dirname "$VENV")"
            "$python" -m venv "$VENV"
        fi
        # setuptools goes into the venv too: later runs reinstall with --no-build-isolation.
        "$VENV/bin/python" -m pip install --upgrade pip 'setuptools>=77' wheel
        "$VENV/bin/python" -m pip install -e "$ROOT[dev]"
        echo "$key" >"$marker"
        return 0
    fi

    # Fast path. The editable install points at whichever clone ran it last; reinstall only
    # when that is another folder (CI clones elsewhere). -I keeps the current directory off
    # sys.path, so the check sees the installed package, not ./stgconv.
    if ! "$VENV/bin/python" -I -c '
import importlib.util, os, sys
spec = importlib.util.find_spec("stgconv")
here = os.path.join(sys.argv[1], "stgconv", "__init__.py")
sys.exit(spec is None or os.path.realpath(spec.origin) != os.path.realpath(here))
' "$ROOT" 2>/dev/null; then
        local log
        # setuptools writes its build warnings to stderr even under -q: show them only on failure.
        log="$("$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e "$ROOT" 2>&1)" ||
            die "reinstalling stgconv into $VENV failed:
$log"
    fi
}

# Relative paths the user gives are relative to where they ran run.sh.
absolute() {
    case "$1" in
    /*) echo "$1" ;;
    *) echo "$CALLER_PWD/$1" ;;
    esac
}

cmd_demo() {
    local out="" args=()
    while [ $# -gt 0 ]; do
        case "$1" in
        --out)
            [ $# -ge 2 ] || die "--out needs a folder"
            out="$(absolute "$2")"
            shift 2
            ;;
        --out=*)
            out="$(absolute "${1#--out=}")"
            shift
            ;;
        *)
            args+=("$1")
            shift
            ;;
        esac
    done
    if [ -z "$out" ]; then
        # The default folder is the demo's own: running the quick start again replaces it.
        out="$ROOT/outputs/demo"
        args+=(--overwrite)
    fi
    local started=$SECONDS
    "$VENV/bin/stgconv" demo --out "$out" ${args[@]+"${args[@]}"}
    local took=$((SECONDS - started))
    cat <<EOF

Demo outputs in $out:
  observed.png                 the training image (scikit-image's brick photograph)
  samples_*.png, samples.png   the training chains along the way, and at the end
  synthesis/synthesized.png    new textures synthesized by the trained model
  checkpoint.pt, config.yaml   the trained model and its resolved config
  tb/                          training curves: tensorboard --logdir "$out/tb"
Wall time: $((took / 60)) min $((took % 60)) s
EOF
}

main() {
    local command="${1:-}"
    case "$command" in
    demo | test | stgconv | python | shell) shift ;;
    -h | --help | help)
        usage
        return 0
        ;;
    "")
        usage >&2
        return 2
        ;;
    *)
        usage >&2
        die "unknown command '$command'"
        ;;
    esac

    # Idle OpenMP threads that spin make torch 2-4x slower on a few shared cores.
    export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
    ensure_libusb
    ensure_venv

    case "$command" in
    demo) cmd_demo "$@" ;;
    test)
        cd "$ROOT"
        # Every test runs on one torch thread (tests/conftest.py), so one pytest process keeps
        # one CPU busy: a worker process per logical CPU (pytest-xdist; at most 4, each holding
        # its own torch) ran the suite on 2 in 360 s where one process took 591-691 s. Logical,
        # not "auto": with psutil installed auto counts physical cores, one for a VM whose two
        # CPUs are one core's hyperthreads. `./run.sh test -n 0 ...` runs it in this process.
        exec "$VENV/bin/python" -m pytest -q -n logical --maxprocesses=4 "$@"
        ;;
    stgconv) exec "$VENV/bin/stgconv" "$@" ;;
    python) exec "$VENV/bin/python" "$@" ;;
    shell)
        export VIRTUAL_ENV="$VENV" PATH="$VENV/bin:$PATH"
        note "environment $VENV is active; 'exit' leaves it"
        exec "${SHELL:-/bin/bash}"
        ;;
    esac
}

main "$@"
