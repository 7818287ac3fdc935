-- The store: runs, records (JSON whole, a few indexed columns), certificates
-- (deduplicated), events, and summary tables kept by the writer in the
-- records' own transaction (store.cpp, Store::commit_staged).
CREATE TABLE IF NOT EXISTS runs(
  id INTEGER PRIMARY KEY,
  uid TEXT NOT NULL UNIQUE,
  command TEXT NOT NULL,
  vantage TEXT NOT NULL,
  series TEXT NOT NULL DEFAULT '',
  source TEXT NOT NULL DEFAULT '',
  args TEXT NOT NULL DEFAULT '',
  tool_version TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'running',
  started_ms INTEGER,
  ended_ms INTEGER);
CREATE INDEX IF NOT EXISTS runs_series ON runs(series, started_ms);
CREATE TABLE IF NOT EXISTS records(
  id INTEGER PRIMARY KEY,
  run_id INTEGER NOT NULL REFERENCES runs(id),
  content_sha256 BLOB NOT NULL,
  kind TEXT NOT NULL,
  observed_ms INTEGER,
  target TEXT, sni TEXT, verdict TEXT,
  issuer TEXT, leaf_sha256 TEXT, control_leaf_sha256 TEXT,
  injector_hop INTEGER, hop_before TEXT, hop_after TEXT,
  body TEXT NOT NULL,
  UNIQUE(run_id, content_sha256));
CREATE INDEX IF NOT EXISTS records_target ON records(target, sni);
CREATE INDEX IF NOT EXISTS records_sni ON records(sni, verdict);
CREATE INDEX IF NOT EXISTS records_hops ON records(hop_before, hop_after) WHERE kind = 'trace';
CREATE INDEX IF NOT EXISTS records_forged ON records(leaf_sha256, kind) WHERE leaf_sha256 IS NOT NULL;
CREATE TABLE IF NOT EXISTS certificates(
  sha256 TEXT PRIMARY KEY,
  der BLOB NOT NULL,
  subject TEXT, issuer TEXT,
  first_seen_ms INTEGER);
CREATE TABLE IF NOT EXISTS run_stats(
  run_id INTEGER PRIMARY KEY REFERENCES runs(id),
  records INTEGER NOT NULL DEFAULT 0,
  intercepted INTEGER NOT NULL DEFAULT 0, blocked INTEGER NOT NULL DEFAULT 0,
  clean INTEGER NOT NULL DEFAULT 0, unreachable INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS target_stats(
  vantage TEXT NOT NULL, kind TEXT NOT NULL, target TEXT NOT NULL,
  records INTEGER NOT NULL, intercepted INTEGER NOT NULL,
  last_verdict TEXT, last_ms INTEGER,
  PRIMARY KEY(vantage, kind, target));
CREATE TABLE IF NOT EXISTS sni_stats(
  vantage TEXT NOT NULL, kind TEXT NOT NULL, sni TEXT NOT NULL,
  records INTEGER NOT NULL, intercepted INTEGER NOT NULL, last_ms INTEGER,
  PRIMARY KEY(vantage, kind, sni));
CREATE TABLE IF NOT EXISTS issuer_stats(
  issuer TEXT PRIMARY KEY, records INTEGER NOT NULL, first_ms INTEGER, last_ms INTEGER);
CREATE TABLE IF NOT EXISTS events(
  id INTEGER PRIMARY KEY,
  run_id INTEGER REFERENCES runs(id),
  series TEXT NOT NULL, vantage TEXT NOT NULL,
  at_ms INTEGER NOT NULL, type TEXT NOT NULL, subject TEXT NOT NULL,
  details TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_series ON events(series, at_ms);
