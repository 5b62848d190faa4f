"""`jobd worker URL --service NAME`: set up this host's side (data dir, sandbox, executor),
pull until SIGTERM or SIGINT, then let runs finish within --kill-grace and hand back the rest."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from types import FrameType

from jobd import __version__
from jobd.config.options import WorkerConfig
from jobd.errors import ConfigError, DataDirUnusable
from jobd.run import procs
from jobd.run.executors.local import LocalExecutor
from jobd.run.executors.spawner import Spawner
from jobd.run.sandbox.confine import Sandbox
from jobd.store.layout import Layout
from jobd.worker.central import Central, Refused, Stopped, heartbeat_every
from jobd.worker.puller import Puller, end_leftovers

log = logging.getLogger("jobd")

#: Past --kill-grace, results and hand-backs are still tried this long.
SEND_GRACE = 30.0
#: How often orphans of ended runs are collected.
REAP_EVERY = 5.0


def run_worker(config: WorkerConfig, spawner: Spawner | None = None) -> int:
    layout = Layout(config.data_dir)
    try:
        layout.lock()
        layout.claim()
        layout.prepare()
    except DataDirUnusable as exc:
        log.error("%s", exc)
        return 1
    procs.adopt_orphans()
    end_leftovers(layout)
    try:
        sandbox = Sandbox.for_data_dir(config, layout)
    except ConfigError as exc:
        log.error("%s", exc)
        return 1
    executor = LocalExecutor(os.environ, config.kill_grace, sandbox, spawner)
    try:
        sandbox.seal(layout)
        return _pull(config, layout, executor)
    finally:
        executor.close()
        sandbox.close()


def _pull(config: WorkerConfig, layout: Layout, executor: LocalExecutor) -> int:
    stopping = threading.Event()
    central = Central(config.url, config.token, stopping)

    def stop(signum: int, frame: FrameType | None) -> None:
        if not stopping.is_set():
            log.info("stopping: no new jobs; running ones get --kill-grace to finish")
        central.finish_by = time.monotonic() + config.kill_grace + SEND_GRACE
        stopping.set()
        central.interrupt()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        heartbeat_timeout = central.pull_service(config.service)
    except Stopped:
        return 0
    except Refused as exc:
        hint = " (set JOBD_TOKEN to the central jobd's --token)" if exc.status == 401 else ""
        log.error("jobd worker cannot start: %s%s", exc, hint)
        return 2
    central.retry_last = heartbeat_every(heartbeat_timeout)
    puller = Puller(config, central, executor, layout, heartbeat_timeout, stopping)
    log.info("%s", executor.sandbox.summary())
    log.info(
        "jobd %s worker: pulling %s's jobs from %s (%d at once, data dir %s)",
        __version__,
        config.service,
        config.url,
        config.workers,
        layout.root,
    )
    puller.start()
    while not stopping.wait(REAP_EVERY):
        procs.reap_adopted()
    puller.stop()
    log.info("worker stopped")
    return 0
