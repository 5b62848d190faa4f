"""GET / in a browser (Accept: text/html) is the status page: the newest jobs with their logs
and results, filters and pages, a page per job (its output, files, and cancel and retry forms
that need the token and this jobd's own page), and pages for schedules, services and queues,
always refreshing itself; curl's GET / keeps job-orchestrator's ping. With a token the page
signs the browser in through a form and a cookie that only reads. Over HTTP with requests, and
in a real browser (Debian's chromium, driven by selenium) at a desktop's and a phone's width,
light and dark, its screenshots kept in tests/artifacts/."""

from __future__ import annotations

import html
import io
import re
import shutil
import zipfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests
from conftest import (
    assert_error,
    assert_status,
    b64,
    make_zip,
    q,
    script,
    unique_id,
    wait_until,
)

TOKEN = "status-page-token-3f9a"
#: What Chromium sends when it navigates to a page.
BROWSER_ACCEPT = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
    "image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"
)
HTML = {"Accept": BROWSER_ACCEPT}
#: Where the browser test leaves its screenshots (gitignored).
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


@pytest.fixture(scope="module")
def server_flags() -> tuple[str, ...]:
    return (
        "--token",
        TOKEN,
        "--workers",
        "3",
        "--kill-grace",
        "1s",
        "--service",
        "gpu:runs_per_user=1,max_runs=2,timeout=1h,memory=512M",
    )


class Page(HTMLParser):
    """What the page shows: its refresh, its forms, its links, and its job rows by column."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.refresh: str | None = None
        self.forms: list[dict[str, str | None]] = []
        self.inputs: list[dict[str, str | None]] = []
        self.hrefs: list[str] = []
        self.headers: list[str] = []
        self.rows: dict[str, dict[str, str]] = {}  # by job ID: column -> text
        self.links: dict[str, dict[str, str]] = {}  # by job ID: label -> href
        self._row: str | None = None
        self._cells: list[str] = []
        self._buffer: list[str] | None = None
        self._anchor: tuple[str, list[str]] | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "meta" and (found.get("http-equiv") or "").lower() == "refresh":
            self.refresh = found.get("content")
        elif tag == "form":
            self.forms.append(found)
        elif tag == "input":
            self.inputs.append(found)
        elif tag == "a":
            self.hrefs.append(found.get("href") or "")
            self._anchor = (found.get("href") or "", [])
        elif tag == "tr" and (found.get("id") or "").startswith("job-"):
            self._row, self._cells = (found.get("id") or "")[4:], []
        elif tag in ("td", "th"):
            self._buffer = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._anchor is not None:
            href, words = self._anchor
            if self._row is not None:
                self.links.setdefault(self._row, {})[" ".join("".join(words).split())] = href
            self._anchor = None
        elif tag in ("td", "th") and self._buffer is not None:
            text = " ".join("".join(self._buffer).split())
            (self._cells if tag == "td" else self.headers).append(text)
            self._buffer = None
        elif tag == "tr" and self._row is not None:
            self.rows[self._row] = dict(zip(self.headers, self._cells, strict=True))
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._buffer is not None:
            self._buffer.append(data)
        if self._anchor is not None:
            self._anchor[1].append(data)


def page_of(resp: requests.Response) -> Page:
    assert_status(resp, 200)
    assert resp.headers["Content-Type"].startswith("text/html"), resp.headers
    return Page(resp.text)


def signed_in(daemon) -> requests.Session:
    """A session holding the cookie the sign-in form gives; no Authorization header."""
    session = requests.Session()
    resp = session.post(
        daemon.url + "/", data={"token": daemon.token}, allow_redirects=False, timeout=10
    )
    assert_status(resp, 303)
    return session


def three_jobs(daemon, gate, names: tuple[str, str, str]) -> tuple[str, str, str]:
    """A job that succeeded, one that failed with exit 3 and one held RUNNING by `gate`,
    newest last; their IDs start with `names`."""
    done_id, failed_id, busy_id = (unique_id(name) for name in names)
    daemon.submit({"run.sh": script("echo 'hello from the finished job'")}, job_id=done_id)
    daemon.submit({"run.sh": script("echo 'it broke' >&2\nexit 3")}, job_id=failed_id)
    daemon.wait_done(done_id)
    daemon.wait_done(failed_id)
    daemon.submit({"run.sh": script(f"echo 'still at it'\n{gate.shell}")}, job_id=busy_id)
    daemon.wait_status(busy_id, "RUNNING")
    wait_until(
        lambda: daemon.api("GET", f"/api/logs/{busy_id}").text == "still at it\n",
        20,
        "the running job's first line",
    )
    return done_id, failed_id, busy_id


def version_of(daemon) -> str:
    return requests.get(daemon.url + "/health", timeout=10).json()["version"]


# --------------------------------------------------------------------------- the ping


def test_curl_still_gets_the_ping(server) -> None:
    ping = server.api("GET", "/", headers={"Accept": "*/*"})
    assert_status(ping, 200)
    assert ping.text == f"jobd {version_of(server)}\n"
    assert ping.headers["Content-Type"] == "text/plain"
    for accept in ("*/*", "application/json", "text/plain", "text/html;q=0"):
        # as before the page: the ping is behind the token, and says so in JSON
        refused = server.api("GET", "/", token=None, headers={"Accept": accept})
        assert_error(refused, 401)
        assert refused.headers["WWW-Authenticate"] == "Bearer"
        assert server.api("GET", "/", headers={"Accept": accept}).text == ping.text
    assert_error(requests.get(server.url + "/", timeout=10), 401)  # requests' default Accept


def test_an_open_daemon_shows_the_page_and_the_ping(jobd) -> None:
    daemon = jobd.start("--workers", "1")
    ping = requests.get(daemon.url + "/", headers={"Accept": "*/*"}, timeout=10)
    assert_status(ping, 200)
    assert (ping.text, ping.headers["Content-Type"]) == (
        f"jobd {version_of(daemon)}\n",
        "text/plain",
    )
    page = page_of(requests.get(daemon.url + "/", headers=HTML, timeout=10))
    assert "No jobs yet" in page.text and "jobd submit myjob/ --wait" in page.text
    assert page.refresh == "20" and page.rows == {}, "idle: it still refreshes, slower"
    assert f"jobd {version_of(daemon)}" in page.text
    # nothing to sign in to: the form's POST goes back to the page, and sets no cookie
    posted = requests.post(daemon.url + "/", data={"token": "x"}, allow_redirects=False, timeout=10)
    assert_status(posted, 303)
    assert "Set-Cookie" not in posted.headers


# --------------------------------------------------------------------------- the page


def test_the_page_lists_jobs_links_them_and_refreshes_while_one_runs(jobd, gates) -> None:
    daemon = jobd.start("--token", TOKEN, "--workers", "2")
    gate = gates()
    done_id, failed_id, busy_id = three_jobs(daemon, gate, ("done", "failed", "busy"))

    page = page_of(daemon.api("GET", "/", headers=HTML))
    assert page.refresh == "5", "a job runs: the page reloads itself"
    assert list(page.rows) == [busy_id, failed_id, done_id], "newest first"
    done, failed, busy = page.rows[done_id], page.rows[failed_id], page.rows[busy_id]
    assert done_id in done["Job"] and done["Status"] == "SUCCESS" and done["Exit code"] == "0"
    assert failed["Status"] == "FAILED" and failed["Exit code"] == "3"
    assert busy["Status"] == "RUNNING" and busy["Exit code"] == "—"
    assert busy["Duration"].startswith("running for "), busy
    assert done["Duration"].endswith(" s") and done["Created (UTC)"][:2] == "20", done
    assert "exited with code 3" in failed["Message"], failed

    def fetch(href: str) -> requests.Response:
        return daemon.api("GET", "/" + href.removeprefix("/"))

    links = page.links
    assert fetch(links[done_id]["stdout"]).text == "hello from the finished job\n"
    assert fetch(links[failed_id]["stderr"]).text == "it broke\n"
    assert fetch(links[busy_id]["stdout"]).text == "still at it\n"
    result = fetch(links[done_id]["result.zip"])
    assert_status(result, 200)
    assert result.headers["Content-Type"] == "application/zip"
    assert "attachment" in result.headers["Content-Disposition"]
    files = zipfile.ZipFile(io.BytesIO(result.content))
    assert files.read("jobd.stdout") == b"hello from the finished job\n"
    kept = zipfile.ZipFile(io.BytesIO(fetch(links[failed_id]["files.zip"]).content))
    assert kept.read("jobd.stderr") == b"it broke\n"
    so_far = zipfile.ZipFile(io.BytesIO(fetch(links[busy_id]["files so far"]).content))
    assert so_far.read("jobd.stdout") == b"still at it\n"

    gate.open()
    daemon.wait_done(busy_id)
    page = page_of(daemon.api("GET", "/", headers=HTML))
    assert page.refresh == "20", "nothing runs: it refreshes more slowly, so new jobs appear"
    assert page.rows[busy_id]["Status"] == "SUCCESS"
    assert "result.zip" in page.links[busy_id]


@pytest.mark.source_only
def test_values_are_escaped_and_ids_quoted_in_links() -> None:
    """No job ID the API accepts holds markup (see JOB_ID_PATTERN), so a hostile job is made
    in memory and rendered: the source's page function, as the daemon calls it."""
    from jobd.http.page_jobs import render
    from jobd.models import Job, JobStatus

    hostile = "<script>alert('x')</script>&\"'"
    jobs = [
        Job(
            hostile,
            JobStatus.SUCCESS,
            seq=7,
            message=hostile,
            created_at=1.0,
            exit_code=0,
            started_at=1.0,
            finished_at=2.0,
        ),
        Job("a b/c", JobStatus.FAILED, seq=8, message="<b>bold</b>", created_at=1.0),
    ]
    text = render(jobs, {"SUCCESS": 1, "FAILED": 1}, now=3.0)
    assert "<script" not in text.lower(), "the page has no scripts at all"
    assert "<script>" not in text and "<b>bold" not in text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&amp;&quot;&#x27;" in text
    page = Page(text)
    assert page.rows.keys() == {hostile, "a b/c"}
    assert "api/logs/%3Cscript%3Ealert%28%27x%27%29%3C%2Fscript%3E%26%22%27" in page.hrefs
    assert "api/logs/a%20b%2Fc?stream=stderr" in page.hrefs
    assert "jobs/a%20b%2Fc" in page.hrefs, "each job links to its page"


# --------------------------------------------------------------------------- the token


@pytest.mark.source_only
def test_without_a_credential_a_browser_gets_the_sign_in_form(server) -> None:
    for extra in ({}, {"Authorization": "Bearer wrong"}, {"Cookie": f"jobd-{server.port}=forged"}):
        resp = server.api("GET", "/", token=None, headers={**HTML, **extra})
        assert_status(resp, 401)
        assert resp.headers["Content-Type"].startswith("text/html")
        form = Page(resp.text)
        assert [f.get("method") for f in form.forms] == ["post"]
        assert [(i.get("name"), i.get("type")) for i in form.inputs] == [("token", "password")]
        assert form.rows == {}, "no job is shown before signing in"
    # every page asks for it, its form posting to the root (from /jobs/x: ../)
    for path, action in (
        ("/jobs", "./"),
        ("/jobs/any", "../"),
        ("/schedules", "./"),
        ("/services", "./"),
        ("/queues", "./"),
    ):
        resp = server.api("GET", path, token=None, headers=HTML)
        assert_status(resp, 401)
        assert [f.get("action") for f in Page(resp.text).forms] == [action], path


@pytest.mark.parametrize("given", ["wrong", TOKEN + "x", TOKEN[:-1], ""])
@pytest.mark.source_only
def test_a_wrong_token_is_refused_with_the_form(server, given) -> None:
    resp = requests.post(server.url + "/", data={"token": given}, allow_redirects=False, timeout=10)
    assert_status(resp, 401)
    assert "Set-Cookie" not in resp.headers
    assert ("token is wrong" if given else "Enter the token") in resp.text
    assert len(Page(resp.text).forms) == 1


@pytest.mark.source_only
def test_a_post_without_the_token_field_is_not_the_form(server) -> None:
    for body in ({"tokens": TOKEN}, None):
        resp = requests.post(server.url + "/", data=body, allow_redirects=False, timeout=10)
        assert "token" in assert_error(resp, 400)["message"]
    big = {"token": "x" * 10_000}
    assert_error(requests.post(server.url + "/", data=big, timeout=10), 413)


def test_the_right_token_gives_a_cookie_that_opens_the_page_and_its_links(server, gates):
    resp = requests.post(server.url + "/", data={"token": TOKEN}, allow_redirects=False, timeout=10)
    assert_status(resp, 303)
    assert resp.headers["Location"] == "./"
    cookie = resp.headers["Set-Cookie"]
    attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/"} <= attributes, cookie
    assert TOKEN not in cookie, "the cookie is not the token"

    gate = gates()
    job_id = unique_id("cookie")
    server.submit({"run.sh": script(f"echo 'seen with a cookie'\n{gate.shell}")}, job_id=job_id)
    # RUNNING comes before run.sh's first line: wait for the line itself
    wait_until(
        lambda: server.api("GET", f"/api/logs/{job_id}").text == "seen with a cookie\n",
        10,
        f"job {job_id} to print its line",
    )
    browser = requests.Session()  # follows the 303, as a browser does
    assert_status(browser.post(server.url + "/", data={"token": TOKEN}, timeout=10), 200)
    page = page_of(browser.get(server.url + "/", headers=HTML, timeout=10))
    assert page.rows[job_id]["Status"] == "RUNNING"
    assert TOKEN not in page.text, "the token is never in the page"
    assert all("token" not in href.lower() for href in page.hrefs), page.hrefs
    stdout = browser.get(urljoin(server.url + "/", page.links[job_id]["stdout"]), timeout=10)
    assert stdout.text == "seen with a cookie\n"
    so_far = browser.get(urljoin(server.url + "/", page.links[job_id]["files so far"]), timeout=10)
    assert zipfile.ZipFile(io.BytesIO(so_far.content)).read("jobd.stdout") == stdout.content
    assert_status(browser.head(server.url + "/", headers=HTML, timeout=10), 200)
    assert_status(browser.get(server.url + "/api/jobs", timeout=10), 200)  # any reading route

    # A page on another site can make a browser POST here with its cookies: they never act.
    number = page.rows[job_id]["Job"].split("#")[-1]
    for path in (f"/api/cancel/{job_id}", f"/kill/{number}", f"/terminate/{number}"):
        assert_error(browser.post(server.url + path, timeout=10), 401)
    assert server.job(job_id)["Status"] == "RUNNING"
    gate.open()
    server.wait_done(job_id)


@pytest.mark.source_only
def test_a_restart_ends_the_sign_in(jobd) -> None:
    daemon = jobd.start("--token", TOKEN, "--workers", "1")
    browser = signed_in(daemon)
    assert_status(browser.get(daemon.url + "/", headers=HTML, timeout=10), 200)
    daemon.stop()
    daemon.start().wait_ready()
    assert_status(browser.get(daemon.url + "/", headers=HTML, timeout=10), 401)


# --------------------------------------------------------------------------- a job's page


def job_page(daemon, browser: requests.Session, ref: str) -> Page:
    return page_of(browser.get(f"{daemon.url}/jobs/{ref}", timeout=10))


def facts(page: Page) -> dict[str, str]:
    """The job page's facts (its <dl>): name -> text."""
    found = re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", page.text, re.S)
    return {name: " ".join(html_text(value).split()) for name, value in found}


def test_each_job_links_to_a_page_of_its_own_with_its_output(server, gates) -> None:
    gate = gates()
    busy_id, done_id = unique_id("busy"), unique_id("done")
    run_sh = script(
        # the line waited for comes last: what is before it is there once it is
        f"echo 'first line err' >&2\nmkdir sub\nprintf 12345 > sub/five\necho 'first line out'"
        f"\n{gate.shell}\necho 'last line out'\nexit 4"
    )
    secret = "value-that-must-never-show-9c1"
    server.submit({"run.sh": run_sh}, job_id=busy_id, env={"API_KEY": secret, "MODE": secret})
    server.submit({"run.sh": script("seq 1 5000")}, job_id=done_id)
    wait_until(
        lambda: server.api("GET", f"/api/logs/{busy_id}").text == "first line out\n",
        20,
        "the running job's first line",
    )
    browser = signed_in(server)
    listed = page_of(browser.get(server.url + "/", headers=HTML, timeout=10))
    assert listed.links[busy_id][busy_id] == f"jobs/{busy_id}", listed.links[busy_id]
    number = listed.rows[busy_id]["Job"].split("#")[1].split()[0]

    running = job_page(server, browser, busy_id)
    assert running.refresh == "5", "it runs: the page refreshes every 5 s"
    said = facts(running)
    assert said["Status"].startswith("RUNNING") and said["Exit code"] == "—", said
    assert said["Started"].endswith("ago)") and said["Finished"] == "—", said
    assert said["Duration"].startswith("running for"), said
    assert said["Env names"] == "API_KEY, MODE", said
    assert said["Service"] == "default" and said["User"] == "—", said
    assert secret not in running.text, "an env value is never shown"
    assert "first line out" in running.text and "first line err" in running.text
    assert re.search(r"<td class='mono'>sub/five</td><td class='code'[^>]*>5</td>", running.text)
    assert "files so far" in running.text and "Cancel this job" in running.text
    assert [i.get("type") for i in running.inputs] == ["password"], "the form asks for the token"
    assert job_page(server, browser, number).text.count(busy_id) >= 2, "the IntID finds it too"

    gate.open()
    server.wait_done(busy_id)
    server.wait_done(done_id)
    ended = job_page(server, browser, busy_id)
    said = facts(ended)
    assert ended.refresh == "20", "finished: it still refreshes, slowly"
    assert said["Status"].startswith("FAILED") and said["Exit code"] == "4", said
    assert "exited with code 4" in said["Message"] and "last line out" in ended.text
    assert "Cancel this job" not in ended.text and "files.zip" in ended.text
    long = job_page(server, browser, done_id)
    assert "the last 8 KB of 23,893 bytes" in long.text and "\n5000\n" in long.text
    assert "\n1\n" not in long.text, "only the tail of a long log"
    for unknown in ("no-such-job", "99999999", "x" * 300):
        missing = browser.get(f"{server.url}/jobs/{unknown}", timeout=10)
        assert_status(missing, 404)
        assert missing.headers["Content-Type"].startswith("text/html")
        assert "there is no job" in missing.text and "Back to the jobs" in missing.text


@pytest.mark.source_only
def test_a_link_out_of_the_job_folder_is_listed_not_followed(server, gates, shared) -> None:
    (shared / "outside-secret.txt").write_text("outside")
    job_id = unique_id("links")
    run_sh = script(
        f"ln -s {q(shared)} escape\nln -s /etc/passwd a-passwd\nmkdir -p deep/er"
        "\nprintf ab > deep/er/x\nfor i in $(seq 1 300); do : > many-$i; done"
    )
    server.submit({"run.sh": run_sh}, job_id=job_id)
    server.wait_done(job_id)
    shown = job_page(server, signed_in(server), job_id)
    cells = re.findall(
        r"<tr><td class='mono'>(.*?)</td><td class='code'[^>]*>(.*?)</td>"
        r"<td[^>]*>(.*?)</td></tr>",
        shown.text,
    )
    kinds = {path: (size, kind) for path, size, kind in cells}
    assert kinds["escape"] == ("—", "link") and kinds["a-passwd"] == ("—", "link"), kinds
    assert kinds["deep/er/x"] == ("2", "file"), kinds
    assert "outside-secret.txt" not in shown.text and "root:" not in shown.text
    assert len(cells) == 200 and "Only the first 200 are listed" in shown.text


def cancel_form(
    daemon,
    job_id: str,
    action: str = "cancel",
    *,
    origin: str | None = "own",
    referer: str | None = None,
    token: str | None = TOKEN,
    session: requests.Session | None = None,
):
    headers = {}
    if origin is not None:
        headers["Origin"] = daemon.url if origin == "own" else origin
    if referer is not None:
        headers["Referer"] = referer
    data = {} if token is None else {"token": token}
    sender = session or requests
    return sender.post(
        f"{daemon.url}/jobs/{job_id}/{action}",
        data=data,
        headers=headers,
        allow_redirects=False,
        timeout=30,
    )


def test_the_cancel_form_needs_the_token_and_this_jobd_s_own_page(server, gates) -> None:
    gate = gates()
    job_id = unique_id("cancelled")
    server.submit({"run.sh": script(gate.shell)}, job_id=job_id)
    server.wait_status(job_id, "RUNNING")
    browser = signed_in(server)
    refusals = [
        (403, "came from", cancel_form(server, job_id, origin=None)),
        (403, "came from", cancel_form(server, job_id, origin="http://evil.example")),
        (403, "came from", cancel_form(server, job_id, origin="null")),
        (
            403,
            "another site",
            cancel_form(server, job_id, origin=None, referer="http://evil.example/jobs/x"),
        ),
        (401, "enter the token", cancel_form(server, job_id, token=None, session=browser)),
        (401, "enter the token", cancel_form(server, job_id, token="", session=browser)),
        (401, "token is wrong", cancel_form(server, job_id, token=TOKEN + "x")),
        (
            403,
            "another site",
            cancel_form(server, job_id, origin="http://127.0.0.1:1", session=browser),
        ),
    ]
    for code, words, resp in refusals:
        assert_status(resp, code)
        assert resp.headers["Content-Type"].startswith("text/html")
        assert "nothing was done" in resp.text, html_text(resp.text)[-300:]
        assert words in html_text(resp.text), (words, html_text(resp.text)[-500:])
    # a bearer header is not the form's token either: the form route skips it
    bearer = cancel_form(server, job_id, token=None, session=None)
    assert_status(bearer, 401)
    assert server.job(job_id)["Status"] == "RUNNING", "no refused form cancelled it"

    done = cancel_form(server, job_id, origin=None, referer=f"{server.url}/jobs/{job_id}")
    assert_status(done, 303)
    assert done.headers["Location"] == f"../{job_id}"
    assert server.job(job_id)["Status"] == "CANCELLED"
    again = cancel_form(server, job_id)
    assert_status(again, 409)
    assert "nothing left to cancel" in again.text
    assert_status(cancel_form(server, "no-such-job"), 404)

    # the retry form: refused the same ways, and nothing is made
    before = len(server.api("GET", "/api/jobs?limit=1000").json())
    for code, resp in (
        (403, cancel_form(server, job_id, "retry", origin="http://evil.example")),
        (403, cancel_form(server, job_id, "retry", origin=None)),
        (401, cancel_form(server, job_id, "retry", token=None, session=browser)),
        (401, cancel_form(server, job_id, "retry", token="wrong")),
    ):
        assert_status(resp, code)
        assert "nothing was done" in resp.text
    assert len(server.api("GET", "/api/jobs?limit=1000").json()) == before
    again = cancel_form(server, job_id, "retry")
    assert_status(again, 303)
    new_id = again.headers["Location"].removeprefix("../")
    assert new_id != job_id and "/" not in new_id, again.headers
    assert server.job(new_id)["Status"] in ("QUEUED", "RUNNING")
    still = cancel_form(server, new_id, "retry")
    assert_status(still, 409)
    assert "still" in html_text(still.text)
    assert_status(cancel_form(server, new_id), 303)


@pytest.mark.source_only
def test_a_user_sees_and_cancels_only_their_own_jobs(jobd, gates, tmp_path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("21 alice-page-token\n22 bob-page-token\n")
    daemon = jobd.start("--token", TOKEN, "--user-tokens", str(tokens), "--workers", "2")
    gate = gates()
    alices = daemon.api(
        "POST",
        "/upload",
        token="alice-page-token",
        files=[("file", ("run.sh", script(gate.shell)))],
    )
    assert_status(alices, 201)
    number = alices.json()["id"]
    bob = requests.Session()
    assert_status(bob.post(daemon.url + "/", data={"token": "bob-page-token"}, timeout=10), 200)
    assert_status(bob.get(f"{daemon.url}/jobs/{number}", timeout=10), 404)
    listed = page_of(bob.get(f"{daemon.url}/jobs?user=21", timeout=10))
    assert listed.rows == {} and "No job matches" in listed.text
    refused = cancel_form(daemon, str(number), token="bob-page-token")
    assert_status(refused, 404)
    wait_until(lambda: daemon.api("GET", f"/api/get/{number}").json()["Status"] == "RUNNING", 20)
    mine = cancel_form(daemon, str(number), token="alice-page-token")
    assert_status(mine, 303)
    assert daemon.api("GET", f"/api/get/{number}").json()["Status"] == "CANCELLED"
    assert_status(cancel_form(daemon, str(number), "retry", token="bob-page-token"), 404)
    assert_status(cancel_form(daemon, str(number), "retry", token="alice-page-token"), 303)


# --------------------------------------------------------------------------- lists and sections


@pytest.mark.source_only
def test_filters_pages_and_bad_input(jobd) -> None:
    daemon = jobd.start("--workers", "3", "--service", "batch:max_runs=2")
    ids = []
    for i in range(52):
        service = {"service": "batch"} if i % 2 else {}
        run_sh = script("exit 1" if i == 51 else "true")
        ids.append(daemon.submit({"run.sh": run_sh}, job_id=f"page-{i:02d}", **service)["ID"])
    for job_id in (ids[-1], ids[0]):
        daemon.wait_done(job_id)

    def listing(query: str = "") -> Page:
        return page_of(requests.get(f"{daemon.url}/jobs{query}", timeout=10))

    first = listing()
    assert list(first.rows) == ids[:1:-1], "the newest 50, newest first"
    older = [href for href in first.hrefs if "before=" in href]
    oldest_shown = first.rows[ids[2]]["Job"].split("#")[1].split()[0]  # its IntID
    assert older == [f"jobs?before={oldest_shown}"], older
    second = listing(older[0].removeprefix("jobs"))
    assert list(second.rows) == ["page-01", "page-00"]
    assert "Newest jobs" in second.text and "Older jobs" not in second.text
    assert "api/jobs?before" not in first.text, "paging stays on HTML pages"

    batch = listing("?service=batch")
    assert set(batch.rows) == {f"page-{i:02d}" for i in range(1, 52, 2)}
    failed = listing("?status=failed&service=batch&user=")
    wait_until(lambda: daemon.job("page-51")["Status"] == "FAILED", 20)
    failed = listing("?status=FAILED&service=batch&user=")
    assert list(failed.rows) == ["page-51"], failed.rows
    assert "<option value='FAILED' selected>" in failed.text
    assert listing("?service=nothing-here").rows == {}
    assert listing("?user=5").rows == {}, "jobs sent without a user are no user's"

    for query, words in (
        ("?status=DONE", "'status' must be one of"),
        ("?before=abc", "'before' must be a whole number"),
        ("?user=-1", "'user' must be a whole number"),
        ("?service=" + "s" * 65, "'service' must be a service's name"),
        ("?service=a%20b", "'service' must be a service's name"),
        ("?status=QUEUED&status=FAILED", "'status' is given 2 times"),
        ("?before=" + "9" * 400, "'before' must be a whole number"),
    ):
        resp = requests.get(f"{daemon.url}/jobs{query}", timeout=10)
        assert_status(resp, 400)
        assert resp.headers["Content-Type"].startswith("text/html")
        assert html_text(resp.text).count(words) == 1, (query, resp.text)


@pytest.mark.source_only
def test_the_pages_link_older_newer_and_newest_keeping_the_filters() -> None:
    """A page in the middle of many: its newer page starts right above it, its older one
    right below, and both keep the filters (in memory: 150 jobs through the daemon take long)."""
    from jobd.http.page_jobs import PAGE_SIZE, Filters, render
    from jobd.models import Job, JobStatus

    def jobs(top: int, count: int) -> list[Job]:
        return [Job(f"j{n}", JobStatus.SUCCESS, seq=n) for n in range(top, top - count, -1)]

    filters = Filters(JobStatus.SUCCESS, "gpu", 7)
    shown = jobs(200, PAGE_SIZE + 1)  # below 201, one more than a page: there are older ones
    newer = jobs(251, PAGE_SIZE + 1)  # the 51 just above 200, newest first, as the store gives
    page = Page(render(shown, {"SUCCESS": 300}, 0.0, None, filters, 201, newer))
    hrefs = page.hrefs
    kept = "jobs?status=SUCCESS&service=gpu&user=7"
    assert f"{kept}&before=251" in hrefs, hrefs  # newer: 250..201
    assert f"{kept}&before=151" in hrefs, hrefs  # older: 150 and below
    assert kept in hrefs, hrefs  # the newest
    assert len(page.rows) == PAGE_SIZE


def html_text(text: str) -> str:
    """What a person reads: the text without its tags, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", text))


def test_schedules_services_and_queues_have_pages_of_their_own(server, gates) -> None:
    name = f"nightly-{unique_id('s')[2:]}"
    made = server.api(
        "POST",
        "/api/schedules",
        json={
            "name": name,
            "schedule": "@every 1h",
            "input": b64(make_zip({"run.sh": script("true")})),
        },
    )
    assert_status(made, 201)
    assert_status(server.api("POST", f"/api/schedules/{name}/trigger"), 200)
    queue = f"q{unique_id('')[1:]}"
    assert_status(server.api("PUT", f"/queue/{queue}", json={"timeout": "5m"}), 201, 200)
    gate = gates()
    server.submit({"run.sh": script(gate.shell)}, service="gpu")
    browser = signed_in(server)

    schedules = page_of(browser.get(server.url + "/schedules", timeout=10))
    row = re.search(rf"<tr><td class='mono'>{name}</td>(.*?)</tr>", schedules.text, re.S)
    assert row, schedules.text[-3000:]
    shown = html_text(row.group(1))
    assert "@every 1h" in shown and "yes" in shown, shown
    assert re.search(r"\d\d:\d\d:\d\d UTC \(in (59 min|1 h)", shown), shown
    assert re.search(r"href='jobs/" + name, row.group(1)), "its last run links to its page"

    services = html_text(page_of(browser.get(server.url + "/services", timeout=10)).text)
    assert "gpu" in services and "2 at once, 1 per user" in services and "512 MiB" in services
    assert "1 h 00 min" in services and "anonymous: 0 queued, 1 running" in services, services

    queues = html_text(page_of(browser.get(server.url + "/queues", timeout=10)).text)
    assert queue in queues and "5m" in queues, queues
    gate.open()

    # every link and form is relative (a proxy may add a path prefix), and HEAD answers
    for path in (
        "/",
        "/jobs?status=RUNNING",
        f"/jobs/{name}-x",
        "/schedules",
        "/services",
        "/queues",
    ):
        shown = Page(browser.get(server.url + path, headers=HTML, timeout=10).text)
        targets = shown.hrefs + [form.get("action") or "" for form in shown.forms]
        assert not [t for t in targets if t.startswith(("/", "http"))], (path, targets)
        assert_status(browser.head(server.url + path, headers=HTML, timeout=10), 200, 404)


@pytest.mark.source_only
def test_a_retry_waiting_out_its_backoff_says_when_in_words(server) -> None:
    job_id = unique_id("flaky")
    retry = {"max_attempts": 2, "initial_interval": "1h", "max_interval": "1h"}
    server.submit({"run.sh": script("exit 7")}, job_id=job_id, retry=retry)
    wait_until(lambda: server.job(job_id)["Attempt"] == 2, 20, "the retry to be queued")
    browser = signed_in(server)
    listed = page_of(browser.get(server.url + "/", headers=HTML, timeout=10))
    row = listed.rows[job_id]
    assert "attempt 2 of 2, starts in 59 min" in row["Status"], row
    assert re.search(r"attempt 2 at \d\d:\d\d:\d\d UTC \(in 59 min \d\d s\)", row["Message"]), row
    assert not re.search(r"\d{4}-\d\d-\d\dT", row["Message"]), "no raw timestamp"
    said = facts(job_page(server, browser, job_id))
    assert re.search(r"attempt 2 of 2; it starts in 59 min \d\d s \(\d{4}-", said["Attempts"])
    assert_status(server.cancel(job_id), 200)


# --------------------------------------------------------------------------- a real browser


def _chromium() -> tuple[str, str]:
    found = shutil.which("chromium"), shutil.which("chromedriver")
    if None in found:
        pytest.skip(
            "Debian's chromium and chromium-driver are not installed (scripts/test.sh installs"
            " them as root: apt-get install chromium chromium-driver)"
        )
    pytest.importorskip("selenium", reason="selenium is missing: pip install '.[test]'")
    return found  # type: ignore[return-value]


@pytest.fixture(scope="module")
def chrome():
    """One headless Chromium for the module's browser tests (starting one costs a second)."""
    browser_path, driver_path = _chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser_path
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,800",
        "--disable-gpu",
        "--hide-scrollbars",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver, seconds: float = 20):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, seconds, ignored_exceptions=(StaleElementReferenceException,))


#: What lies past the viewport's right (or left) edge: each visible element's box, and the
#: document's own scroll width. Run by WebDriver (not by the page, which allows no script).
OVERFLOW = """
const width = document.documentElement.clientWidth, out = [];
for (const el of document.querySelectorAll('body *')) {
  const box = el.getBoundingClientRect(), style = getComputedStyle(el);
  if (!box.width || !box.height || style.visibility === 'hidden') continue;
  if (box.right > width + 0.5 || box.left < -0.5)
    out.push(`${el.tagName.toLowerCase()}.${el.className} [${Math.round(box.left)},`
      + `${Math.round(box.right)}] ${(el.textContent || '').trim().slice(0, 40)}`);
}
return [width, document.scrollingElement.scrollWidth, out];
"""


def _show(driver, width: int, dark: bool) -> None:
    """The viewport as a phone (390 px, touch) or a desktop (1280 px) shows it, light or dark."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {
            "width": width,
            "height": 844 if width < 500 else 800,
            "deviceScaleFactor": 1,
            "mobile": width < 500,
        },
    )
    scheme = [{"name": "prefers-color-scheme", "value": "dark" if dark else "light"}]
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": scheme})


def _screenshot(driver, name: str) -> None:
    """The whole page, not only the viewport, as a PNG in tests/artifacts/."""
    import base64

    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}
    )
    (ARTIFACTS / f"{name}.png").write_bytes(base64.b64decode(shot["data"]))


def _check_fits(driver, where: str) -> None:
    width, scroll_width, past = driver.execute_script(OVERFLOW)
    assert scroll_width <= width, (
        f"{where}: the document scrolls sideways ({scroll_width} > {width})"
    )
    assert not past, f"{where}: past the viewport's edge ({width} px): {past[:8]}"


@pytest.mark.source_only
def test_every_page_fits_1280_and_390_px_light_and_dark(jobd, gates, chrome) -> None:
    """Every page, at a desktop's and a phone's width (Chromium's device-metrics emulation),
    light and dark: what a person needs is there and nothing lies past the right edge."""
    from selenium.webdriver.common.by import By

    daemon = jobd.start(
        "--token", TOKEN, "--workers", "2", "--service", "gpu:runs_per_user=1,max_runs=2"
    )
    gate = gates()
    done_id, failed_id, busy_id = three_jobs(
        daemon, gate, ("analysis-of-a-long-named-dataset-2026-12-06-0001", "fit", "simulation")
    )
    name = "nightly-report"
    made = daemon.api(
        "POST",
        "/api/schedules",
        json={
            "name": name,
            "schedule": "0 2 * * *",
            "timezone": "Europe/Amsterdam",
            "input": b64(make_zip({"run.sh": script("true")})),
        },
    )
    assert_status(made, 201)
    assert_status(daemon.api("PUT", "/queue/renders", json={"timeout": "5m"}), 201, 200)
    driver, wait = chrome, _wait(chrome)

    for width in (1280, 390):
        _show(driver, width, dark=False)
        driver.delete_all_cookies()
        driver.get(daemon.url + "/")
        wait.until(lambda d: d.find_elements(By.NAME, "token"))
        _check_fits(driver, f"sign-in at {width}")
        _screenshot(driver, f"page-sign-in-{width}")
    driver.find_element(By.NAME, "token").send_keys(TOKEN)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(lambda d: d.find_elements(By.ID, f"job-{busy_id}"))

    pages = {
        "list": (
            "/",
            [
                done_id,
                failed_id,
                busy_id,
                "RUNNING",
                "FAILED",
                "SUCCESS",
                "stdout",
                "result.zip",
                "running for",
                "renders",
            ],
        ),
        "list-filtered": ("/jobs?status=FAILED", [failed_id, "FAILED", "files.zip", "Clear"]),
        "job-running": (
            f"/jobs/{busy_id}",
            [busy_id, "RUNNING", "still at it", "Cancel this job", "files so far", "Started"],
        ),
        "job-finished": (
            f"/jobs/{done_id}",
            [
                done_id,
                "SUCCESS",
                "hello from the finished job",
                "result.zip",
                "Exit code",
                "jobd.stdout",
            ],
        ),
        "schedules": ("/schedules", [name, "0 2 * * *", "Europe/Amsterdam", "UTC (in "]),
        "services": ("/services", ["gpu", "2 at once, 1 per user", "default"]),
        "queues": ("/queues", ["renders", "queued", "5m"]),
    }
    for label, (path, needed) in pages.items():
        for width in (1280, 390):
            for dark in (False, True):
                _show(driver, width, dark)
                driver.get(daemon.url + path)
                text = wait.until(lambda d: d.find_element(By.TAG_NAME, "main").text)
                missing = [words for words in needed if words not in text]
                assert not missing, f"{label} at {width}: {missing} not shown in\n{text}"
                _check_fits(driver, f"{label} at {width}{' dark' if dark else ''}")
                _screenshot(driver, f"page-{label}-{width}{'-dark' if dark else ''}")
        if label == "list":  # a card at a phone's width: its status and links are in view
            card = driver.find_element(By.ID, f"job-{failed_id}")
            assert "FAILED" in card.text and "files.zip" in card.text, card.text
    background = driver.execute_script("return getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(13, 17, 23)", f"dark mode is not dark: {background}"
    gate.open()
    daemon.wait_done(busy_id)


@pytest.mark.source_only
def test_in_a_real_browser(jobd, gates, chrome) -> None:
    from selenium.webdriver.common.by import By

    daemon = jobd.start("--token", TOKEN, "--workers", "2")
    gate = gates()
    done_id, failed_id, busy_id = three_jobs(daemon, gate, ("analysis", "fit", "simulation"))
    driver, wait = chrome, _wait(chrome)
    _show(driver, 390, dark=False)
    driver.get(daemon.url + "/")
    field = wait.until(lambda d: d.find_element(By.NAME, "token"))
    field.send_keys("not the token")
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(lambda d: "token is wrong" in d.find_element(By.TAG_NAME, "main").text)
    field = driver.find_element(By.NAME, "token")
    field.send_keys(TOKEN)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()

    def row_text(job_id: str) -> str:
        return wait.until(lambda d: d.find_element(By.ID, f"job-{job_id}").text)

    wait.until(lambda d: d.find_elements(By.ID, f"job-{busy_id}"))
    assert TOKEN not in driver.current_url
    done, failed, busy = row_text(done_id), row_text(failed_id), row_text(busy_id)
    assert "FAILED" in failed and "3" in failed.split() and "files.zip" in failed, failed
    assert done_id in done and "SUCCESS" in done and "0" in done.split(), done
    assert busy_id in busy and "RUNNING" in busy and "running for" in busy, busy
    assert "result.zip" in done and "stdout" in busy
    hrefs = [a.get_attribute("href") or "" for a in driver.find_elements(By.TAG_NAME, "a")]
    assert hrefs and all(TOKEN not in href for href in hrefs), hrefs

    # The page refreshes itself (a job runs: every 5 s), and keeps the reader's place: a
    # marker the refresh wipes out tells that it happened.
    driver.execute_script("window.scrollTo(0, 300); window.beforeRefresh = true;")
    assert driver.execute_script("return window.scrollY") == 300
    _wait(driver, 15).until(lambda d: d.execute_script("return !window.beforeRefresh"))
    wait.until(lambda d: d.find_elements(By.ID, f"job-{busy_id}"))
    assert driver.execute_script("return window.scrollY") == 300, "the refresh kept the place"

    # what a person does next: open the finished job's output (in a new tab, so that
    # the page goes on refreshing), read it, and come back
    page_tab = driver.current_window_handle
    driver.find_element(By.ID, f"job-{done_id}").find_element(By.LINK_TEXT, "stdout").click()
    wait.until(lambda d: len(d.window_handles) == 2)
    driver.switch_to.window(next(h for h in driver.window_handles if h != page_tab))
    wait.until(lambda d: "hello from the finished job" in d.find_element(By.TAG_NAME, "body").text)
    assert driver.current_url == f"{daemon.url}/api/logs/{done_id}"
    driver.close()
    driver.switch_to.window(page_tab)

    # the running job's page, and its cancel form with the token: back to its page, cancelled
    driver.find_element(By.ID, f"job-{busy_id}").find_element(By.LINK_TEXT, busy_id).click()
    wait.until(lambda d: "Cancel this job" in d.find_element(By.TAG_NAME, "main").text)
    driver.find_element(By.NAME, "token").send_keys(TOKEN)
    driver.find_element(By.CSS_SELECTOR, "form.act button").click()
    wait.until(lambda d: "CANCELLED" in d.find_element(By.TAG_NAME, "main").text)
    assert driver.current_url == f"{daemon.url}/jobs/{busy_id}"
    assert daemon.job(busy_id)["Status"] == "CANCELLED"
    # and run it again: the new job's page
    driver.find_element(By.NAME, "token").send_keys(TOKEN)
    driver.find_element(By.CSS_SELECTOR, "form.act button").click()
    wait.until(lambda d: d.current_url != f"{daemon.url}/jobs/{busy_id}")
    new_id = driver.current_url.rpartition("/")[2]
    assert new_id != busy_id and new_id in driver.find_element(By.TAG_NAME, "h1").text
    assert daemon.job(new_id)["Status"] in ("QUEUED", "RUNNING")
    print(f"screenshots: {ARTIFACTS}/page-*.png")
