"""The schema, as the steps that build it: a new jobd migrates old data by running the steps
from the version it finds to the last one, each in its own transaction."""

#: Each step takes the schema from its index to the next version; a new jobd migrates old data.
MIGRATIONS = (
    """
CREATE TABLE IF NOT EXISTS jobs (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT    NOT NULL UNIQUE,
    status      TEXT    NOT NULL,
    message     TEXT    NOT NULL DEFAULT '',
    exit_code   INTEGER,
    slurml      INTEGER NOT NULL DEFAULT 0,
    slurm_id    INTEGER NOT NULL DEFAULT 0,
    timeout     REAL,
    created_at  REAL    NOT NULL,
    started_at  REAL,
    finished_at REAL,
    updated_at  REAL    NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    pgid        INTEGER,
    pgid_start  INTEGER,
    expired     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, seq);
""",
    """
ALTER TABLE jobs ADD COLUMN callback_url TEXT;
CREATE TABLE outbox (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id     TEXT    NOT NULL,
    url        TEXT    NOT NULL,
    created_at REAL    NOT NULL,
    next_at    REAL    NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    last_error TEXT    NOT NULL DEFAULT '',
    state      TEXT    NOT NULL DEFAULT 'pending'  -- pending, delivered, abandoned
);
CREATE INDEX outbox_due ON outbox (state, next_at);
""",
    """
ALTER TABLE jobs ADD COLUMN user_id INTEGER;
ALTER TABLE jobs ADD COLUMN service TEXT NOT NULL DEFAULT 'default';
CREATE TABLE turns (
    service  TEXT    NOT NULL,
    user_key INTEGER NOT NULL,  -- user_id, or -1 for jobs sent without one
    served   INTEGER NOT NULL,  -- when one of the user's jobs last started: a counter
    PRIMARY KEY (service, user_key)
);
""",
    """
ALTER TABLE jobs ADD COLUMN env TEXT NOT NULL DEFAULT '{}';
""",
    """
ALTER TABLE jobs ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;
ALTER TABLE jobs ADD COLUMN max_attempts INTEGER NOT NULL DEFAULT 1;
ALTER TABLE jobs ADD COLUMN retry_initial REAL NOT NULL DEFAULT 1;
ALTER TABLE jobs ADD COLUMN retry_max REAL NOT NULL DEFAULT 60;
ALTER TABLE jobs ADD COLUMN retry_multiplier REAL NOT NULL DEFAULT 2;
ALTER TABLE jobs ADD COLUMN due_at REAL;
ALTER TABLE jobs ADD COLUMN callback_auth TEXT;
""",
    """
ALTER TABLE jobs ADD COLUMN schedule TEXT;
CREATE INDEX jobs_by_schedule ON jobs (schedule, seq);
CREATE TABLE schedules (
    name       TEXT PRIMARY KEY,
    body       TEXT    NOT NULL,  -- JSON: when, zone, concurrency and the runs' settings
    enabled    INTEGER NOT NULL,
    last_fire  REAL    NOT NULL,  -- the slot it last fired for (at first: its creation)
    created_at REAL    NOT NULL,
    updated_at REAL    NOT NULL
);
""",
    """
ALTER TABLE schedules ADD COLUMN user_id INTEGER;  -- its owner (--user-tokens); NULL: none
CREATE INDEX jobs_by_user ON jobs (user_id, seq);
ALTER TABLE jobs ADD COLUMN memory_limit INTEGER;  -- bytes; NULL: none
ALTER TABLE jobs ADD COLUMN process_limit INTEGER;  -- NULL: none
""",
    """
CREATE TABLE queues (
    name              TEXT PRIMARY KEY,
    timeout           INTEGER NOT NULL,  -- durations in whole seconds; 0: none
    heartbeat_timeout INTEGER NOT NULL,
    expires_after     INTEGER NOT NULL,
    retries           INTEGER NOT NULL,
    retry_delays      TEXT    NOT NULL,  -- JSON list of seconds
    created_at        REAL    NOT NULL
);
CREATE TABLE qjobs (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused
    queue             TEXT    NOT NULL,
    status            TEXT    NOT NULL,
    position          INTEGER NOT NULL,  -- order among the queue's queued jobs
    tags              TEXT,              -- JSON list, or NULL
    input             TEXT    NOT NULL,  -- JSON
    output            TEXT,              -- JSON, or NULL
    created_at        REAL    NOT NULL,
    started_at        REAL,
    ended_at          REAL,
    last_heartbeat    REAL,
    timeout           INTEGER NOT NULL,
    heartbeat_timeout INTEGER NOT NULL,
    expires_after     INTEGER NOT NULL,
    retries           INTEGER NOT NULL,
    retries_attempted INTEGER NOT NULL DEFAULT 0,
    retry_delays      TEXT,              -- JSON list of seconds, or NULL
    due_at            REAL  -- the next time the queue monitor must look at it; NULL: never
);
CREATE INDEX qjobs_next ON qjobs (queue, status, position);
CREATE INDEX qjobs_due ON qjobs (due_at) WHERE due_at IS NOT NULL;
CREATE TABLE qjob_tags (
    tag    TEXT    NOT NULL,
    job_id INTEGER NOT NULL,
    PRIMARY KEY (tag, job_id)
);
CREATE INDEX qjob_tags_by_job ON qjob_tags (job_id);
CREATE TABLE queue_stats (
    name  TEXT PRIMARY KEY,  -- jobs_created, jobs_completed, ...: Ocypod's /info statistics
    count INTEGER NOT NULL
);
""",
    """
ALTER TABLE jobs ADD COLUMN pulled INTEGER NOT NULL DEFAULT 0;  -- a runner=pull service's
ALTER TABLE jobs ADD COLUMN lease INTEGER;  -- the queue job that carries its run; NULL: none
CREATE INDEX jobs_unleased ON jobs (due_at)
    WHERE pulled = 1 AND lease IS NULL AND status = 'QUEUED';
CREATE INDEX jobs_by_lease ON jobs (lease) WHERE lease IS NOT NULL;
""",
)
SCHEMA_VERSION = len(MIGRATIONS)
