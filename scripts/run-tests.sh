#!/usr/bin/env bash
# The test suite, with the SLURM test running beside it (`make test` calls this after the lints).
#
# The SLURM test (`make test-slurm`: bring a single-node cluster up, run the tiny pipeline on it
# and locally, compare, tear down) spends most of its four minutes waiting: for the scheduler,
# for the executor's sacct polls, for job start-up. Run after the suite that wait is added to the
# wall clock; run beside it, it is hidden behind the suite, which leaves a core idle most of the
# time. Its output goes to a log that is printed when both are done; the exit status is the
# suite's, or the SLURM test's when the suite passed.
#
# LIPSPEECH_SKIP_SLURM=1 skips the SLURM test; as non-root without SLURM installed it is skipped
# with the reason (it needs root to install and start the daemons).
#
# The suite runs on LIPSPEECH_TEST_WORKERS pytest-xdist workers (default: one per core), each taking
# whole test files (--dist loadfile: a module's fixtures are built once, on one worker). Most tests
# are one-threaded (conftest's one_thread), so on a 2-core machine two workers took the suite from
# 15.6 to 8.0 minutes (2026-12-05, same clone, same machine). LIPSPEECH_TEST_WORKERS=0: one process.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
log="${TMPDIR:-/tmp}/lipspeech-test-slurm.log"

slurm_pid=""
if [ -n "${LIPSPEECH_SKIP_SLURM:-}" ]; then
    echo "test-slurm skipped (LIPSPEECH_SKIP_SLURM is set)"
elif [ "$(id -u)" != 0 ] && ! command -v slurmctld >/dev/null; then
    echo "test-slurm skipped: not root and SLURM is not installed (run 'sudo make test-slurm')"
else
    echo "test-slurm: running beside the suite (log: $log)"
    make --no-print-directory test-slurm >"$log" 2>&1 &
    slurm_pid=$!
fi

workers=${LIPSPEECH_TEST_WORKERS:-$(nproc)}
if [ "$workers" -gt 0 ]; then
    "$BIN/python" -m pytest -q -n "$workers" --dist loadfile
else
    "$BIN/python" -m pytest -q
fi
suite=$?

slurm=0
if [ -n "$slurm_pid" ]; then
    [ "$suite" -eq 0 ] || echo "the suite failed ($suite); waiting for the SLURM test to finish and tear its cluster down"
    wait "$slurm_pid"
    slurm=$?
    echo "--- test-slurm (exit $slurm) ---"
    cat "$log"
fi
[ "$suite" -ne 0 ] && exit "$suite"
exit "$slurm"
