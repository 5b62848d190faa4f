"""Serving: waitress on the configured address, a log line per request, clean shutdown."""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import resource
import signal
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import waitress
from waitress.channel import HTTPChannel

from jobd import __version__
from jobd.config.options import Config
from jobd.errors import ConfigError, DataDirUnusable
from jobd.frozen import exit_with_launcher
from jobd.http.app import create_app
from jobd.http.responses import SEND_HEADERS
from jobd.http.slots import SMALL_BODY
from jobd.jobs.service import JobService
from jobd.run import procs
from jobd.run.executors.local import LocalExecutor
from jobd.run.executors.slurm import SlurmExecutor
from jobd.run.executors.spawner import Spawner
from jobd.run.sandbox.confine import Sandbox
from jobd.store import Store
from jobd.store.layout import Layout

log = logging.getLogger("jobd")

WSGIApp = Callable[[dict, Callable], Iterable[bytes]]


class _Logged:
    """Wraps a response body so the request is logged when it has been sent in full."""

    def __init__(self, body: Iterable[bytes], line: Callable[[], str], quiet: bool) -> None:
        self._body = body
        self._line = line
        self._level = logging.DEBUG if quiet else logging.INFO

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            log.log(self._level, "%s", self._line())


def access_log(app: WSGIApp) -> WSGIApp:
    def logged(environ: dict, start_response: Callable) -> Iterable[bytes]:
        started = time.perf_counter()
        status = ["-"]

        def capture(line: str, headers: list, exc_info: object = None) -> object:
            status[0] = line.split(" ", 1)[0]
            return start_response(line, headers, exc_info)

        def line() -> str:
            query = environ.get("QUERY_STRING")
            path = environ.get("PATH_INFO", "") + (f"?{query}" if query else "")
            job = environ.get("jobd.job_id")
            took = (time.perf_counter() - started) * 1000
            text = f"{environ.get('REMOTE_ADDR', '-')} {environ['REQUEST_METHOD']} {path}"
            return f"{text} {status[0]} {took:.1f}ms" + (f" job={job}" if job else "")

        body = app(environ, capture)
        # a worker's empty polls and heartbeats come every second: logged at debug level
        return _Logged(body, line, environ.get("jobd.quiet", False))

    return logged


class _HeadersOnMarker:
    def __init__(self, body: Iterable[bytes], writes: list[Callable[[bytes], object]]) -> None:
        self._body = body
        self._writes = writes

    def __iter__(self) -> Iterator[bytes]:
        for piece in self._body:
            if piece is SEND_HEADERS:
                self._writes[-1](b"")
            else:
                yield piece

    def close(self) -> None:  # WSGI closes every body, also one never iterated
        close = getattr(self._body, "close", None)
        if close is not None:
            close()


def headers_on_marker(app: WSGIApp) -> WSGIApp:
    """Where a body yields SEND_HEADERS, send the headers then: an empty write through the
    callable start_response returned (PEP 3333), which sends them and no body."""

    def wrapped(environ: dict, start_response: Callable) -> Iterable[bytes]:
        writes: list[Callable[[bytes], object]] = []

        def capture(line: str, headers: list, exc_info: object = None) -> object:
            write = start_response(line, headers, exc_info)
            writes.append(write)
            return write

        return _HeadersOnMarker(app(environ, capture), writes)

    return wrapped


#: Connections accepted at most per turn of waitress's loop (it accepts one by default).
ACCEPT_BATCH = 64
#: Bytes the kernel holds for one connection's unread answer (SO_SNDBUF).
SEND_BUFFER = 128 * 1024
#: A response whose client has read nothing for this long is ended, freeing its thread.
STALL_TIMEOUT = 30.0
#: File descriptors kept for jobs, the store and logs when sizing the connection limit.
SPARE_FDS = 128


def _listeners(server: Any) -> list[Any]:
    """waitress's server objects: one, or one per address of a MultiSocketServer."""
    found = [server] if hasattr(server, "active_channels") else list(server.map.values())
    return [each for each in found if hasattr(each, "active_channels")]


def tune(server: Any) -> None:
    """What waitress has no setting for, so that slow or stalled clients cannot starve the
    others (each step is one method of waitress's server, wrapped):

    - a response whose client has read nothing for STALL_TIMEOUT is closed: waitress times
      out only connections with no request running, so its thread would wait for ever;
    - every waiting connection is accepted in one turn of the loop, not one per turn: each
      turn polls every open connection, and a burst of hundreds would hold up the next one;
    - a connection's kernel send buffer is SEND_BUFFER, not autotuned to megabytes: a client
      that stops reading then holds that much, and no more is encoded for it while /health
      waits for the GIL;
    - the loop does not spin on a connection whose request's thread is sending (see
      _Channel).
    """
    for each in _listeners(server):
        _close_stalled(each)
        _accept_in_batches(each)
        _bound_send_buffer(each)
        each.channel_class = _Channel


class _Channel(HTTPChannel):
    """While a request's thread sends (send_bytes=1), it holds the output's lock and the
    loop cannot take it: writable, the connection would wake the loop again at once, about
    three turns per answer, each taking the GIL from that thread. That thread wakes the loop
    itself (waitress's trigger) when it leaves output unsent and when its request ends.
    Where a thread waits for the loop (output over the high-water mark, a close), the loop
    keeps its turn as waitress gives it."""

    def writable(self) -> bool:
        if not super().writable():
            return False
        if (
            self.will_close
            or self.close_when_flushed
            or self.total_outbufs_len > self.adj.outbuf_high_watermark
        ):
            return True
        if not self.outbuf_lock.acquire(False):
            return False  # a request's thread is sending
        self.outbuf_lock.release()
        return True


def _close_stalled(each: Any) -> None:
    cleanup = each.maintenance

    def maintenance(now: float) -> None:
        cleanup(now)
        for channel in list(each.active_channels.values()):
            stalled = now - channel.last_activity > STALL_TIMEOUT
            if channel.requests and channel.total_outbufs_len and stalled:
                log.warning(
                    "%s stopped reading its answer %.0fs ago; closed the connection",
                    channel.addr[0] if channel.addr else "a client",
                    now - channel.last_activity,
                )
                channel.handle_close()

    each.maintenance = maintenance


def _accept_in_batches(each: Any) -> None:
    accept_one = each.handle_accept

    def handle_accept() -> None:
        for _ in range(ACCEPT_BATCH):
            before = len(each._map)
            accept_one()
            if len(each._map) == before or len(each._map) >= each.adj.connection_limit:
                return  # none was waiting, or no room for more

    each.handle_accept = handle_accept


def _bound_send_buffer(each: Any) -> None:
    set_options = each.set_socket_options

    def set_socket_options(conn: socket.socket) -> None:
        set_options(conn)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)

    each.set_socket_options = set_socket_options


def connection_limit() -> int:
    """As many connections as open files allow (raised to the hard limit), so idle or slow
    clients do not lock others out; waitress closes idle ones after its channel_timeout."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        wanted = 65536 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            pass
    return max(100, min(soft - SPARE_FDS, 10_000))


def _stopper(service: JobService) -> Callable[[int, FrameType | None], None]:
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        # Only the first signal starts the shutdown. A second one (Ctrl-C reaches the frozen
        # binary twice: as a member of the group and forwarded by its launcher) must neither
        # run inside the first, where it would wait for a lock the first holds, nor cut the
        # shutdown short before every run is ended.
        nonlocal stopping
        if stopping:
            return
        stopping = True
        # before waitress waits for its threads: long-polls and follows answer now
        service.quiesce()
        raise SystemExit(0)  # waitress's run() closes the server on SystemExit and returns

    return stop


#: What to do when the address cannot be listened on, by errno.
_OTHER_PORT = "choose another port with --port (or JOBD_PORT)"
_OTHER_ADDRESS = (
    "choose another address with --host (or JOBD_HOST) or port with --port (or JOBD_PORT)"
)
_LISTEN_FIXES = {
    errno.EADDRINUSE: f"is another jobd running? {_OTHER_PORT}",
    errno.EACCES: f"this user may not listen there (ports below 1024 need root); {_OTHER_PORT}",
    errno.EADDRNOTAVAIL: "no network interface here has that address; choose another with"
    " --host (or JOBD_HOST), e.g. 0.0.0.0 for all",
}


def _open_to_anyone(config: Config) -> bool:
    """No token, and an address other hosts may reach (a name counts as one, bar localhost)."""
    if config.token is not None or config.user_tokens is not None:
        return False
    if config.host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(config.host.strip("[]")).is_loopback
    except ValueError:
        return True


def _warn_sealed(closed: list[Path]) -> None:
    if closed:
        log.warning(
            "job users cannot pass %s on the way to the data dir: a job works in its folder"
            " but cannot name it by its full path; give it o+x, or choose another --data-dir",
            closed[-1],
        )


def serve(config: Config, spawner: Spawner | None = None) -> int:
    layout = Layout(config.data_dir)
    try:
        layout.lock()
    except DataDirUnusable as exc:
        log.error("%s", exc)
        return 1
    exit_with_launcher()
    procs.adopt_orphans()
    try:
        store = Store(layout.db)
    except DataDirUnusable as exc:
        log.error("%s", exc)
        layout.unlock()
        return 1
    layout.claim()
    try:
        sandbox = Sandbox.for_data_dir(config, layout)
    except ConfigError as exc:
        log.error("%s", exc)
        store.close()
        layout.unlock()
        return 1
    slurm = SlurmExecutor(
        os.environ, config.slurm_partition, config.slurm_account, config.slurm_args
    )
    executor = LocalExecutor(os.environ, config.kill_grace, sandbox, spawner)
    service = JobService(config, store, layout, executor, slurm)
    try:
        service.prepare()
        closed = sandbox.seal(layout)
    except DataDirUnusable as exc:
        log.error("%s", exc)
        sandbox.close()
        store.close()
        return 1
    try:
        server = waitress.create_server(
            access_log(headers_on_marker(create_app(config, service))),
            host=config.host,
            port=config.port,
            threads=config.threads,
            connection_limit=connection_limit(),
            # waitress buffers a body before the app sees it and answers bodies over its limit
            # itself, in plain text; jobd's own check (JSON, after the token) has room below it
            max_request_body_size=2 * config.max_upload + (1 << 20),
            channel_timeout=2 * 60,
            cleanup_interval=5,
            # a response holds at most this much in memory; past it, the thread waits for
            # the client (and holds a slot: see slots.py)
            outbuf_high_watermark=SMALL_BODY,
            # read on while a request runs, so a long-poll or a follow sees its client leave
            channel_request_lookahead=1,
            asyncore_use_poll=True,
            ident="jobd",
            # send each piece as soon as it is written, from the request's own thread: no hop
            # to the main loop per response, and followed logs arrive line by line
            send_bytes=1,
        )
    except OSError as exc:
        log.error(
            "cannot listen on %s:%s: %s; %s",
            config.host,
            config.port,
            exc.strerror,
            _LISTEN_FIXES.get(exc.errno or 0, _OTHER_ADDRESS),
        )
        sandbox.close()
        store.close()
        return 1
    # said once jobd can serve, so that a refusal to start stays one line
    log.info("%s", sandbox.summary())
    _warn_sealed(closed)
    tune(server)
    signal.signal(signal.SIGTERM, _stopper(service))
    signal.signal(signal.SIGINT, _stopper(service))
    service.start()
    log.info(
        "jobd %s listening on http://%s:%s (data dir %s, workers: %d)",
        __version__,
        config.host,
        server.effective_port,
        config.data_dir.resolve(),
        config.workers,
    )
    if _open_to_anyone(config):
        log.warning(
            "jobd has no token and listens on %s, so anyone who can reach port %s can run"
            " code here: set one with --token TOKEN or JOBD_TOKEN (or serve on --host 127.0.0.1)",
            config.host,
            server.effective_port,
        )
    try:
        server.run()
    finally:
        log.info("shutting down")
        service.quiesce()  # also when the server stopped for another reason
        server.close()
        unclean = service.stop()
        executor.close()
        sandbox.close()
        store.close()
    if unclean is not None:  # the exit code says so: a supervisor may want to look
        log.error("shutdown was not clean: %s", unclean)
        return 1
    return 0
