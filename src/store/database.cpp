#include "store/database.hpp"

namespace mw::store {

bool Database::is_postgresql_url(std::string_view where) {
  return where.rfind("postgresql://", 0) == 0 || where.rfind("postgres://", 0) == 0;
}

std::string redact_url(const std::string& url) {
  // scheme://user:password@host/...: the password goes.
  auto scheme = url.find("://");
  if (scheme == std::string::npos) return url;
  auto at = url.find('@', scheme + 3);
  auto slash = url.find('/', scheme + 3);
  if (at == std::string::npos || (slash != std::string::npos && slash < at)) return url;
  auto colon = url.find(':', scheme + 3);
  if (colon == std::string::npos || colon > at) return url;
  return url.substr(0, colon + 1) + "***" + url.substr(at);
}

tl::expected<Database, Error> Database::open(const std::string& where, bool read_only) {
  Database db;
  bool pg = is_postgresql_url(where);
  db.name_ = pg ? redact_url(where) : where;
  auto impl = pg ? open_postgresql(where, read_only) : open_sqlite(where, read_only);
  if (!impl) return tl::unexpected(impl.error());
  db.impl_ = std::move(*impl);
  return db;
}

tl::expected<Statement, Error> Database::prepare(std::string_view sql) {
  auto s = impl_->prepare(sql);
  if (!s) return tl::unexpected(s.error());
  return Statement(std::move(*s));
}

std::string Database::now_ms_sql() const {
  if (dialect() == Dialect::postgresql) return "CAST(extract(epoch FROM clock_timestamp()) * 1000 AS BIGINT)";
  return "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)";
}

Statement& Statement::set(int i, Value v) {
  if (i < 1) return *this;
  if (params_.size() < static_cast<size_t>(i)) params_.resize(static_cast<size_t>(i));
  params_[static_cast<size_t>(i - 1)] = std::move(v);
  return *this;
}

Statement& Statement::bind_blob(int i, const void* data, size_t size) {
  auto p = static_cast<const unsigned char*>(data);
  return set(i, Blob{std::vector<unsigned char>(p, p + size)});
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
  impl_->reset();
  params_.clear();
}

std::optional<std::string> Statement::text_or_null(int col) const {
  if (is_null(col)) return std::nullopt;
  return text(col);
}

tl::expected<Transaction, Error> Transaction::begin(Database& db) {
  if (auto ok = db.exec(db.begin_sql()); !ok) return tl::unexpected(ok.error());
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
