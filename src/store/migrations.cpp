#include "store/migrations.hpp"

#include <fmt/format.h>

namespace mw {
std::string_view migration_sqlite_0001();
std::string_view migration_sqlite_0002();
std::string_view migration_postgresql_0001();
std::string_view migration_postgresql_0002();
}  // namespace mw

namespace mw::store {

const std::vector<Migration>& migrations(Dialect dialect) {
  static const std::vector<Migration> sqlite{{1, "store", migration_sqlite_0001()},
                                             {2, "fleet", migration_sqlite_0002()}};
  static const std::vector<Migration> postgresql{{1, "store", migration_postgresql_0001()},
                                                 {2, "fleet", migration_postgresql_0002()}};
  return dialect == Dialect::sqlite ? sqlite : postgresql;
}

int latest_schema_version() { return migrations(Dialect::sqlite).back().version; }

tl::expected<int, Error> schema_version(Database& db) {
  // A missing meta table is a store with no schema yet (or not a store: the
  // caller decides). Asked without failing, which would abort a PostgreSQL transaction.
  auto has_meta = db.prepare(db.dialect() == Dialect::sqlite
                                 ? "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
                                 : "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename = 'meta'");
  if (!has_meta) return tl::unexpected(has_meta.error());
  auto row = has_meta->step();
  if (!row) return tl::unexpected(row.error());
  if (has_meta->int64(0) == 0) return 0;
  auto q = db.prepare("SELECT value FROM meta WHERE key = 'schema_version'");
  if (!q) return tl::unexpected(q.error());
  row = q->step();
  if (!row) return tl::unexpected(row.error());
  if (!*row) return 0;
  try {
    return std::stoi(q->text(0));
  } catch (const std::exception&) {
    return tl::unexpected(fmt::format("{}: schema_version '{}' is not a number", db.path(), q->text(0)));
  }
}

tl::expected<int, Error> migrate(Database& db) {
  // Up to date, the usual case: a read says so without taking the write lock
  // (eight agents starting at once on SQLite would queue for it).
  if (auto at = schema_version(db); at && *at == latest_schema_version()) return *at;
  auto tx = Transaction::begin(db);
  if (!tx) return tl::unexpected(tx.error());
  if (db.dialect() == Dialect::postgresql)  // two agents starting at once: one migrates, the other waits
    if (auto ok = db.exec("SELECT pg_advisory_xact_lock(7406551043)"); !ok) return tl::unexpected(ok.error());
  auto at = schema_version(db);
  if (!at) return tl::unexpected(at.error());
  int latest = latest_schema_version();
  if (*at > latest)
    return tl::unexpected(fmt::format("{}: store schema version {} (this mitmwatch reads up to {})", db.path(), *at, latest));
  if (*at == latest) return *at;  // nothing to do: the transaction rolls back
  if (auto ok = db.exec("CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)"); !ok)
    return tl::unexpected(ok.error());
  for (const auto& m : migrations(db.dialect())) {
    if (m.version <= *at) continue;
    if (auto ok = db.exec(std::string(m.sql)); !ok)
      return tl::unexpected(fmt::format("migration {} ({}): {}", m.version, m.name, ok.error()));
  }
  auto set = db.prepare(
      "INSERT INTO meta(key, value) VALUES('schema_version', ?1) ON CONFLICT(key) DO UPDATE SET value = excluded.value");
  if (!set) return tl::unexpected(set.error());
  set->bind(1, std::to_string(latest));
  if (auto ok = set->run(); !ok) return tl::unexpected(ok.error());
  if (auto ok = tx->commit(); !ok) return tl::unexpected(ok.error());
  return latest;
}

}  // namespace mw::store
