-- A fleet of vantages (src/fleet/): a campaign is a target list x test SNIs x
-- vantages; its jobs are (vantage, shard) pairs that agents claim, measure and
-- complete; agents say who they are and when they were last seen.
CREATE TABLE campaigns(
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  command TEXT NOT NULL,
  trace INTEGER NOT NULL DEFAULT 0,
  targets TEXT NOT NULL,
  target_lines INTEGER NOT NULL,
  snis TEXT NOT NULL,
  args TEXT NOT NULL,
  vantages TEXT NOT NULL,
  shards INTEGER NOT NULL,
  lease_ms INTEGER NOT NULL,
  max_attempts INTEGER NOT NULL,
  created_ms INTEGER NOT NULL);
CREATE TABLE jobs(
  id INTEGER PRIMARY KEY,
  campaign_id INTEGER NOT NULL REFERENCES campaigns(id),
  vantage TEXT NOT NULL,
  shard INTEGER NOT NULL,
  state TEXT NOT NULL DEFAULT 'queued',
  attempts INTEGER NOT NULL DEFAULT 0,
  agent TEXT, claim TEXT,
  claimed_ms INTEGER, heartbeat_ms INTEGER, lease_until_ms INTEGER, finished_ms INTEGER,
  scan_run_id INTEGER REFERENCES runs(id), trace_run_id INTEGER REFERENCES runs(id),
  records INTEGER, intercepted INTEGER,
  error TEXT,
  UNIQUE(campaign_id, vantage, shard));
-- Claims look only at open jobs: a campaign of a million done jobs costs nothing.
CREATE INDEX jobs_open ON jobs(vantage, id) WHERE state IN ('queued', 'running');
CREATE TABLE agents(
  name TEXT PRIMARY KEY,
  vantage TEXT NOT NULL,
  host TEXT NOT NULL,
  pid INTEGER,
  state TEXT NOT NULL,
  job_id INTEGER,
  jobs_done INTEGER NOT NULL DEFAULT 0,
  started_ms INTEGER, seen_ms INTEGER);
