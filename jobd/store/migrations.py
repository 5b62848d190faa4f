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
)
SCHEMA_VERSION = len(MIGRATIONS)
