// The SQLite backend: one file in WAL mode, for one machine.
#include "store/database.hpp"

#include <sqlite3.h>

#include <map>

namespace mw::store {
namespace {

class SqliteStatement final : public StatementBackend {
 public:
  SqliteStatement(sqlite3_stmt* s, std::string name) : stmt_(s), name_(std::move(name)) {}

  tl::expected<bool, Error> step(std::span<const Value> params) override {
    if (!started_) {
      started_ = true;
      for (size_t i = 0; i < params.size(); ++i) bind(static_cast<int>(i + 1), params[i]);
    }
    int rc = sqlite3_step(stmt_.get());
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return tl::unexpected(name_ + ": " + sqlite3_errmsg(sqlite3_db_handle(stmt_.get())));
  }
  void reset() override {
    sqlite3_reset(stmt_.get());
    sqlite3_clear_bindings(stmt_.get());
    started_ = false;
  }
  ColumnType type(int col) const override {
    switch (sqlite3_column_type(stmt_.get(), col)) {
      case SQLITE_NULL: return ColumnType::null;
      case SQLITE_INTEGER: return ColumnType::integer;
      case SQLITE_FLOAT: return ColumnType::real;
      case SQLITE_BLOB: return ColumnType::blob;
      default: return ColumnType::text;
    }
  }
  int64_t int64(int col) const override { return sqlite3_column_int64(stmt_.get(), col); }
  double real(int col) const override { return sqlite3_column_double(stmt_.get(), col); }
  std::string text(int col) const override {
    auto p = sqlite3_column_text(stmt_.get(), col);
    return p ? std::string(reinterpret_cast<const char*>(p), sqlite3_column_bytes(stmt_.get(), col)) : std::string();
  }
  std::vector<unsigned char> blob(int col) const override {
    auto p = static_cast<const unsigned char*>(sqlite3_column_blob(stmt_.get(), col));
    return p ? std::vector<unsigned char>(p, p + sqlite3_column_bytes(stmt_.get(), col)) : std::vector<unsigned char>();
  }

 private:
  // The values stay in the Statement until reset, so SQLite need not copy them.
  void bind(int i, const Value& v) {
    sqlite3_stmt* s = stmt_.get();
    if (auto n = std::get_if<int64_t>(&v)) {
      sqlite3_bind_int64(s, i, *n);
    } else if (auto d = std::get_if<double>(&v)) {
      sqlite3_bind_double(s, i, *d);
    } else if (auto t = std::get_if<std::string>(&v)) {
      sqlite3_bind_text(s, i, t->data(), static_cast<int>(t->size()), SQLITE_STATIC);
    } else if (auto b = std::get_if<Blob>(&v)) {
      sqlite3_bind_blob(s, i, b->bytes.data(), static_cast<int>(b->bytes.size()), SQLITE_STATIC);
    } else {
      sqlite3_bind_null(s, i);
    }
  }
  struct Finalize {
    void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
  };
  std::unique_ptr<sqlite3_stmt, Finalize> stmt_;
  std::string name_;
  bool started_ = false;
};

class SqliteConnection final : public ConnectionBackend {
 public:
  static tl::expected<std::unique_ptr<ConnectionBackend>, Error> open(const std::string& path, bool read_only) {
    sqlite3* raw = nullptr;
    int flags = read_only ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    flags |= SQLITE_OPEN_NOMUTEX;
    int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
    auto c = std::unique_ptr<SqliteConnection>(new SqliteConnection(raw, path));
    if (rc != SQLITE_OK) return tl::unexpected(path + ": " + (raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc)));
    // Another process (a monitor writing while the dashboard reads) holds the
    // write lock only for one transaction; wait for it rather than fail.
    sqlite3_busy_timeout(raw, 10000);
    return std::unique_ptr<ConnectionBackend>(std::move(c));
  }

  Dialect dialect() const override { return Dialect::sqlite; }
  std::string begin_sql() const override { return "BEGIN IMMEDIATE"; }

  tl::expected<void, Error> exec(const std::string& sql) override {
    char* message = nullptr;
    if (sqlite3_exec(db_.get(), sql.c_str(), nullptr, nullptr, &message) != SQLITE_OK) {
      Error e = path_ + ": " + (message ? message : "error");
      sqlite3_free(message);
      return tl::unexpected(e);
    }
    return {};
  }

  tl::expected<std::unique_ptr<StatementBackend>, Error> prepare(std::string_view sql) override {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db_.get(), sql.data(), static_cast<int>(sql.size()), &s, nullptr) != SQLITE_OK)
      return tl::unexpected(path_ + ": " + sqlite3_errmsg(db_.get()) + " in: " + std::string(sql.substr(0, 80)));
    return std::unique_ptr<StatementBackend>(new SqliteStatement(s, path_));
  }

  // A prepared INSERT per table, run once a row: inside a transaction this
  // is SQLite's fastest way in.
  tl::expected<void, Error> bulk_insert(const std::string& table, const std::vector<std::string>& columns,
                                        const std::vector<Value>& cells) override {
    auto& slot = inserts_[table];
    if (!slot) {
      std::string sql = "INSERT INTO " + table + "(";
      std::string values;
      for (size_t i = 0; i < columns.size(); ++i) {
        sql += (i ? "," : "") + columns[i];
        values += (i ? ",?" : "?") + std::to_string(i + 1);
      }
      auto s = prepare(sql + ") VALUES(" + values + ")");
      if (!s) return tl::unexpected(s.error());
      slot = std::move(*s);
    }
    for (size_t at = 0; at + columns.size() <= cells.size(); at += columns.size()) {
      auto done = slot->step(std::span<const Value>(cells).subspan(at, columns.size()));
      slot->reset();
      if (!done) return tl::unexpected(done.error());
    }
    return {};
  }

 private:
  SqliteConnection(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  struct Close {
    void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
  };
  // Statements are finalized before the connection closes (members go in reverse).
  std::unique_ptr<sqlite3, Close> db_;
  std::string path_;
  std::map<std::string, std::unique_ptr<StatementBackend>> inserts_;
};

}  // namespace

tl::expected<std::unique_ptr<ConnectionBackend>, Error> open_sqlite(const std::string& path, bool read_only) {
  return SqliteConnection::open(path, read_only);
}

}  // namespace mw::store
