// The store's SQL connection, over either backend: SQLite (one file, WAL) for
// one machine, PostgreSQL for a fleet of vantages writing into one place.
// Callers write SQL once, with numbered parameters (?1, ?2, ...) and in the
// common subset of both dialects; where the dialects part (column types,
// row locking, the server's clock) the caller asks `dialect()`.
//
// Written here rather than taken from SQLiteCpp or libpqxx: both report every
// error by exception, and the store's boundary returns tl::expected like the
// rest of the I/O code; what the store needs (open, statements, bind, step,
// columns, bulk load) is this file and one backend file each.
#pragma once

#include <tl/expected.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace mw::store {

using Error = std::string;

enum class Dialect { sqlite, postgresql };
enum class ColumnType { null, integer, real, text, blob };

// One value bound to a parameter or loaded in bulk.
struct Blob {
  std::vector<unsigned char> bytes;
};
using Value = std::variant<std::monostate, int64_t, double, std::string, Blob>;

// What a backend's statement does; Statement below is the caller's handle.
class StatementBackend {
 public:
  virtual ~StatementBackend() = default;
  // The first call runs the statement with `params`; each call moves to the next row.
  virtual tl::expected<bool, Error> step(std::span<const Value> params) = 0;
  virtual void reset() = 0;
  virtual ColumnType type(int col) const = 0;
  virtual int64_t int64(int col) const = 0;
  virtual double real(int col) const = 0;
  virtual std::string text(int col) const = 0;
  virtual std::vector<unsigned char> blob(int col) const = 0;
};

class ConnectionBackend {
 public:
  virtual ~ConnectionBackend() = default;
  virtual Dialect dialect() const = 0;
  // Several statements separated by ';', no parameters.
  virtual tl::expected<void, Error> exec(const std::string& sql) = 0;
  virtual tl::expected<std::unique_ptr<StatementBackend>, Error> prepare(std::string_view sql) = 0;
  // Appends rows (`cells` row after row, columns.size() a row) to `table`.
  virtual tl::expected<void, Error> bulk_insert(const std::string& table, const std::vector<std::string>& columns,
                                                const std::vector<Value>& cells) = 0;
  virtual std::string begin_sql() const = 0;
};

class Statement {
 public:
  explicit Statement(std::unique_ptr<StatementBackend> s) : impl_(std::move(s)) {}
  // Binds by 1-based position; nullopt binds NULL.
  Statement& bind(int i, int64_t v) { return set(i, v); }
  Statement& bind(int i, double v) { return set(i, v); }
  Statement& bind(int i, std::string_view v) { return set(i, std::string(v)); }
  Statement& bind(int i, const std::string& v) { return set(i, v); }
  Statement& bind(int i, const char* v) { return set(i, std::string(v)); }
  Statement& bind(int i, const std::optional<std::string>& v) { return v ? set(i, *v) : set(i, std::monostate{}); }
  Statement& bind(int i, const std::optional<int64_t>& v) { return v ? set(i, *v) : set(i, std::monostate{}); }
  Statement& bind_blob(int i, const void* data, size_t size);
  Statement& bind_null(int i) { return set(i, std::monostate{}); }
  // One step: true with a row to read, false when done; an error otherwise.
  tl::expected<bool, Error> step() { return impl_->step(params_); }
  // Steps to the end (for writes) and resets for the next use.
  tl::expected<void, Error> run();
  // Ready to run again: rows dropped, parameters cleared.
  void reset();

  ColumnType type(int col) const { return impl_->type(col); }
  bool is_null(int col) const { return impl_->type(col) == ColumnType::null; }
  int64_t int64(int col) const { return impl_->int64(col); }
  double real(int col) const { return impl_->real(col); }
  std::string text(int col) const { return impl_->text(col); }
  std::optional<std::string> text_or_null(int col) const;
  std::vector<unsigned char> blob(int col) const { return impl_->blob(col); }

 private:
  Statement& set(int i, Value v);
  std::unique_ptr<StatementBackend> impl_;
  std::vector<Value> params_;
};

class Database {
 public:
  // A path (":memory:" for tests) opens SQLite, creating the file; a
  // postgresql:// or postgres:// URL (libpq's syntax) connects to PostgreSQL.
  static tl::expected<Database, Error> open(const std::string& where, bool read_only = false);
  static bool is_postgresql_url(std::string_view where);

  Dialect dialect() const { return impl_->dialect(); }
  tl::expected<void, Error> exec(const std::string& sql) { return impl_->exec(sql); }
  tl::expected<Statement, Error> prepare(std::string_view sql);
  tl::expected<void, Error> bulk_insert(const std::string& table, const std::vector<std::string>& columns,
                                        const std::vector<Value>& cells) {
    return impl_->bulk_insert(table, columns, cells);
  }
  std::string begin_sql() const { return impl_->begin_sql(); }
  // The path, or the URL without its password: for messages.
  const std::string& path() const { return name_; }
  // SQL for "now" in milliseconds since the epoch, by the database's clock:
  // the one clock all agents of a fleet share.
  std::string now_ms_sql() const;

 private:
  std::unique_ptr<ConnectionBackend> impl_;
  std::string name_;
};

// A write transaction (BEGIN IMMEDIATE on SQLite); ROLLBACK unless commit() ran.
class Transaction {
 public:
  static tl::expected<Transaction, Error> begin(Database& db);
  Transaction(Transaction&& o) noexcept : db_(o.db_) { o.db_ = nullptr; }
  Transaction& operator=(Transaction&&) = delete;
  ~Transaction();
  tl::expected<void, Error> commit();

 private:
  explicit Transaction(Database* db) : db_(db) {}
  Database* db_;
};

// The backends (store/sqlite.cpp, store/postgres.cpp).
tl::expected<std::unique_ptr<ConnectionBackend>, Error> open_sqlite(const std::string& path, bool read_only);
tl::expected<std::unique_ptr<ConnectionBackend>, Error> open_postgresql(const std::string& url, bool read_only);
// `url` with any password replaced by "***".
std::string redact_url(const std::string& url);

}  // namespace mw::store
