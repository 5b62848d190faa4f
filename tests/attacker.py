"""A hostile run.sh: it tries, one by one, what a job may not do to another job, to jobd and to
the image, and what it may do, and writes each outcome to `probes.txt` (`name=allowed`,
`name=denied`, or `name=other: <error>` when it failed for another reason than a refusal).
A refusal is EACCES or EPERM, or EXDEV: Landlock's answer to a link that would let a file be
reached with more rights than where it is.

What it aims at comes in its environment: DATA_DIR (jobd's data dir), VICTIM_DIR (another
running job's folder), VICTIM_TMP (that job's TMPDIR), VICTIM_PID (its run.sh), FINISHED_DIR
(a finished job's folder, jobs/<id>), DAEMON_PIDS
(jobd's processes: one, or the binary's launcher, loader and Python), SHARED (a folder the
operator shares with --job-writable). Whatever a probe reads goes to `loot/<name>`, so the
test can check that no secret reached the attacker's result; what it says on stderr goes to
`errors/<name>`.
"""

from __future__ import annotations

import shlex

#: What the contract forbids: each must fail with EACCES or EPERM ("denied").
FORBIDDEN: dict[str, str] = {
    # another job: its folder, its kept input, its TMPDIR, its environment, its processes
    "read_victim_file": 'cat "$VICTIM_DIR/secret.txt"',
    "list_victim_folder": 'ls -a "$VICTIM_DIR"',
    "list_victim_job_folder": 'ls -a "$VICTIM_DIR/.."',
    "read_victim_input": 'cat "$VICTIM_DIR/../input.zip"',
    "read_victim_tmp": 'cat "$VICTIM_TMP/secret.txt"',
    "read_victim_environ": 'cat "/proc/$VICTIM_PID/environ"',
    "read_victim_via_proc_cwd": 'cat "/proc/$VICTIM_PID/cwd/secret.txt"',
    "signal_victim": 'kill -0 "$VICTIM_PID"',
    "write_victim_folder": ': > "$VICTIM_DIR/intruder-$JOBD_JOB_ID"',
    "write_victim_tmp": ': > "$VICTIM_TMP/intruder-$JOBD_JOB_ID"',
    # a job that has finished: its folder and its result
    "read_finished_file": 'cat "$FINISHED_DIR/work/secret.txt"',
    "list_finished_folder": 'ls -a "$FINISHED_DIR/work"',
    "read_finished_result": 'cat "$FINISHED_DIR/result.zip"',
    # jobd: its store, its data dir, its environment (the token), its process
    "read_store": 'cat "$DATA_DIR/jobd.db"',
    "read_store_by_symlink": (
        'ln -s "$DATA_DIR/jobd.db" "$SHARED/symlink-$JOBD_JOB_ID"'
        ' && cat "$SHARED/symlink-$JOBD_JOB_ID"'
    ),
    "read_store_by_hard_link": (
        'ln "$DATA_DIR/jobd.db" "$SHARED/hardlink-$JOBD_JOB_ID"'
        ' && cat "$SHARED/hardlink-$JOBD_JOB_ID"'
    ),
    "read_lock": 'cat "$DATA_DIR/jobd.lock"',
    "list_data_dir": 'ls -a "$DATA_DIR"',
    "list_jobs": 'ls -a "$DATA_DIR/jobs"',
    "list_scratch": 'ls -a "$DATA_DIR/scratch"',
    "list_above_data_dir": 'ls -a "$DATA_DIR/.."',
    "read_daemon_environ": 'for p in $DAEMON_PIDS; do cat "/proc/$p/environ" && exit; done; exit 1',
    # where its descriptors lead (the binary's launcher and loader, dumpable, let a job of
    # their user list the numbers in /proc/PID/fd, but not read a link: Landlock's rule)
    "read_daemon_fds": 'for p in $DAEMON_PIDS; do ls -l "/proc/$p/fd" && exit; done; exit 1',
    "signal_daemon": 'for p in $DAEMON_PIDS; do kill -0 "$p" && exit; done; exit 1',
    "write_data_dir": ': > "$DATA_DIR/intruder-$JOBD_JOB_ID"',
    "write_jobs": ': > "$DATA_DIR/jobs/intruder-$JOBD_JOB_ID"',
    "write_scratch": ': > "$DATA_DIR/scratch/intruder-$JOBD_JOB_ID"',
    "write_own_job_folder": ': > "../intruder-$JOBD_JOB_ID"',
    # the image
    "write_etc": ': > "/etc/intruder-$JOBD_JOB_ID"',
    "write_tmp": ': > "/tmp/intruder-$JOBD_JOB_ID"',
    "list_root": "ls -a /",
}

#: What the contract allows in the same job: each must succeed ("allowed").
ALLOWED: dict[str, str] = {
    "write_own_folder": "echo mine > own.txt && cat own.txt",
    "mktemp_in_tmpdir": (
        'f=$(mktemp) && case "$f" in "$TMPDIR"/*) echo scratch > "$f" && cat "$f" ;;'
        ' *) echo "mktemp made $f, not in $TMPDIR" >&2; exit 1 ;; esac'
    ),
    "read_etc_passwd": "cat /etc/passwd",
    "read_usr_bin": "ls /usr/bin > /dev/null && wc -c < /usr/bin/env",
    "write_shared": ': > "$SHARED/attacker-$JOBD_JOB_ID"',
    "write_dev_shm": 'f="/dev/shm/jobd-probe-$JOBD_JOB_ID" && echo x > "$f" && rm "$f"',
    "write_dev_null": "echo x > /dev/null",
    "signal_itself": "kill -0 $$",
}

#: Probes that only look (`kill -0` too; links go in SHARED): safe where nothing confines the job.
READ_ONLY = tuple(name for name in FORBIDDEN if not name.startswith("write_"))

#: Where a write probe would leave a file (with the attacker's job ID for `{id}`), for the
#: test to check, and to clean up if one got through.
WRITE_TARGETS: dict[str, str] = {
    "write_victim_folder": "{victim_dir}/intruder-{id}",
    "write_victim_tmp": "{victim_tmp}/intruder-{id}",
    "write_data_dir": "{data_dir}/intruder-{id}",
    "write_jobs": "{data_dir}/jobs/intruder-{id}",
    "write_scratch": "{data_dir}/scratch/intruder-{id}",
    "write_own_job_folder": "{data_dir}/jobs/{id}/intruder-{id}",
    "write_etc": "/etc/intruder-{id}",
    "write_tmp": "/tmp/intruder-{id}",
}

#: What the probes may leave in SHARED (allowed there), to clean up.
LEFT_IN_SHARED = ("attacker-{id}", "symlink-{id}", "hardlink-{id}")

_PROBE = """\
probe() {
    if sh -c "$2" > "loot/$1" 2> "errors/$1"; then
        echo "$1=allowed"
    elif grep -q -e 'ermission denied' -e 'ot permitted' -e 'cross-device link' "errors/$1"; then
        echo "$1=denied"
    else
        echo "$1=other: $(tr '\\n' ' ' < "errors/$1")"
    fi >> probes.txt
}
"""


def run_sh(probes: dict[str, str]) -> bytes:
    """The attacker's run.sh: facts about itself first (its uid, its TMPDIR and what that
    held at the start, its HOME, its environment), then each probe in turn."""
    lines = [
        "#!/bin/sh",
        "mkdir loot errors",
        "id -u > uid.txt",
        'printf %s "$TMPDIR" > tmpdir.txt',
        'printf %s "$HOME" > home.txt',
        'ls -A "$TMPDIR" > tmpdir-at-start.txt',
        "env > own-env.txt",
        _PROBE,
    ]
    lines += [f"probe {name} {shlex.quote(command)}" for name, command in probes.items()]
    return ("\n".join(lines) + "\n").encode()


def outcomes(text: str) -> dict[str, str]:
    """probes.txt as {name: outcome}."""
    found = {}
    for line in text.splitlines():
        name, _, outcome = line.partition("=")
        found[name] = outcome
    return found
