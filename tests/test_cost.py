"""What a trivial job costs the daemon, counted rather than timed: SQLite commits (from
/metrics' jobd_store_commits_total) and lines of its log, per job, over jobs submitted with
/api/upload and fetched with one long-poll each. The bounds are today's figures: a change
that adds a commit or a log line to every job fails here, whatever the machine's speed."""

from __future__ import annotations

from conftest import script, unique_id, wait_until

JOBS = 20
#: Per job: insert, claim, its process group, its end.
MOST_COMMITS = 4
#: Per job: the upload's and the GET's access lines, QUEUED, RUNNING and its end.
MOST_LOG_LINES = 5
#: What the daemon's loops may write meanwhile, whatever the jobs: far below one per job.
SLACK = 5


def commits(daemon) -> int:
    text = daemon.api("GET", "/metrics").text
    (line,) = [line for line in text.splitlines() if line.startswith("jobd_store_commits_total")]
    return int(float(line.split()[-1]))


def test_a_trivial_job_costs_few_commits_and_log_lines(jobd):
    daemon = jobd.start()
    daemon.wait_done(daemon.submit({"run.sh": script("true")})["ID"])  # start-up's writes done
    before, lines_before = commits(daemon), len(daemon.log().splitlines())
    last = ""
    for _ in range(JOBS):
        last = unique_id("cost")
        daemon.submit({"run.sh": script("echo hello")}, id=last)
        assert daemon.wait_done(last)["Status"] == "SUCCESS"
    spent = commits(daemon) - before
    # the last GET's access line is written once its answer is out
    wait_until(lambda: f"GET /api/get/{last}" in daemon.log(), 10, "the last GET's log line")
    lines = daemon.log().splitlines()[lines_before:]
    lines = [line for line in lines if "GET /metrics" not in line]
    assert spent <= MOST_COMMITS * JOBS + SLACK, f"{spent / JOBS:.2f} commits per job"
    assert len(lines) <= MOST_LOG_LINES * JOBS + SLACK, (
        f"{len(lines) / JOBS:.2f} log lines per job:\n" + "\n".join(lines[:12])
    )
