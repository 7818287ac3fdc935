#include "store/sqlite.hpp"

namespace mw::store {

tl::expected<Database, Error> Database::open(const std::string& path, bool read_only) {
  sqlite3* raw = nullptr;
  int flags = read_only ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  flags |= SQLITE_OPEN_NOMUTEX;
  int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  Database db;
  db.db_.reset(raw);
  db.path_ = path;
  if (rc != SQLITE_OK) {
    return tl::unexpected(path + ": " + (raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc)));
  }
  // Another process (a monitor writing while the dashboard reads) holds the
  // write lock only for one transaction; wait for it rather than fail.
  sqlite3_busy_timeout(raw, 10000);
  return db;
}

tl::expected<void, Error> Database::exec(const std::string& sql) {
  char* message = nullptr;
  if (sqlite3_exec(db_.get(), sql.c_str(), nullptr, nullptr, &message) != SQLITE_OK) {
    Error e = path_ + ": " + (message ? message : "error");
    sqlite3_free(message);
    return tl::unexpected(e);
  }
  return {};
}

tl::expected<Statement, Error> Database::prepare(std::string_view sql) {
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(db_.get(), sql.data(), static_cast<int>(sql.size()), &s, nullptr) != SQLITE_OK)
    return tl::unexpected(path_ + ": " + sqlite3_errmsg(db_.get()) + " in: " + std::string(sql.substr(0, 80)));
  return Statement(s);
}

Statement& Statement::bind(int i, int64_t v) {
  sqlite3_bind_int64(stmt_.get(), i, v);
  return *this;
}
Statement& Statement::bind(int i, double v) {
  sqlite3_bind_double(stmt_.get(), i, v);
  return *this;
}
Statement& Statement::bind(int i, std::string_view v) {
  sqlite3_bind_text(stmt_.get(), i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  return *this;
}
Statement& Statement::bind(int i, const std::optional<std::string>& v) {
  return v ? bind(i, std::string_view(*v)) : bind_null(i);
}
Statement& Statement::bind(int i, const std::optional<int64_t>& v) { return v ? bind(i, *v) : bind_null(i); }
Statement& Statement::bind_blob(int i, const void* data, size_t size) {
  sqlite3_bind_blob(stmt_.get(), i, data, static_cast<int>(size), SQLITE_TRANSIENT);
  return *this;
}
Statement& Statement::bind_null(int i) {
  sqlite3_bind_null(stmt_.get(), i);
  return *this;
}

tl::expected<bool, Error> Statement::step() {
  int rc = sqlite3_step(stmt_.get());
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return tl::unexpected(Error(sqlite3_errmsg(sqlite3_db_handle(stmt_.get()))));
}

tl::expected<void, Error> Statement::run() {
  for (;;) {
    auto more = step();
    if (!more) {
      reset();
      return tl::unexpected(more.error());
    }
    if (!*more) break;
  }
  reset();
  return {};
}

void Statement::reset() {
  sqlite3_reset(stmt_.get());
  sqlite3_clear_bindings(stmt_.get());
}

std::string Statement::text(int col) const {
  auto p = sqlite3_column_text(stmt_.get(), col);
  return p ? std::string(reinterpret_cast<const char*>(p), sqlite3_column_bytes(stmt_.get(), col)) : std::string();
}

std::vector<unsigned char> Statement::blob(int col) const {
  auto p = static_cast<const unsigned char*>(sqlite3_column_blob(stmt_.get(), col));
  return p ? std::vector<unsigned char>(p, p + sqlite3_column_bytes(stmt_.get(), col)) : std::vector<unsigned char>();
}

std::optional<std::string> Statement::text_or_null(int col) const {
  if (is_null(col)) return std::nullopt;
  return text(col);
}

tl::expected<Transaction, Error> Transaction::begin(Database& db) {
  if (auto ok = db.exec("BEGIN IMMEDIATE"); !ok) return tl::unexpected(ok.error());
  return Transaction(&db);
}

Transaction::~Transaction() {
  if (db_) (void)db_->exec("ROLLBACK");
}

tl::expected<void, Error> Transaction::commit() {
  auto ok = db_->exec("COMMIT");
  if (ok) db_ = nullptr;
  return ok;
}

}  // namespace mw::store
