// RAII over SQLite's C API. Written here rather than taken from SQLiteCpp
// because that library reports every error by exception, and the store's
// boundary returns tl::expected like the rest of the I/O code; what the
// store needs (open, prepared statements, bind, step, columns) is this file.
#pragma once

#include <sqlite3.h>
#include <tl/expected.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mw::store {

using Error = std::string;

class Statement;

class Database {
 public:
  // Opens (creating) `path`; ":memory:" works for tests.
  static tl::expected<Database, Error> open(const std::string& path, bool read_only = false);
  tl::expected<void, Error> exec(const std::string& sql);
  tl::expected<Statement, Error> prepare(std::string_view sql);
  int64_t last_insert_id() const { return sqlite3_last_insert_rowid(db_.get()); }
  int changes() const { return sqlite3_changes(db_.get()); }
  Error error() const { return sqlite3_errmsg(db_.get()); }
  sqlite3* get() const { return db_.get(); }
  const std::string& path() const { return path_; }

 private:
  struct Close {
    void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
  };
  std::unique_ptr<sqlite3, Close> db_;
  std::string path_;
};

class Statement {
 public:
  explicit Statement(sqlite3_stmt* s) : stmt_(s) {}
  // Binds by 1-based position; nullopt binds NULL.
  Statement& bind(int i, int64_t v);
  Statement& bind(int i, double v);
  Statement& bind(int i, std::string_view v);
  Statement& bind(int i, const std::string& v) { return bind(i, std::string_view(v)); }
  Statement& bind(int i, const char* v) { return bind(i, std::string_view(v)); }
  Statement& bind(int i, const std::optional<std::string>& v);
  Statement& bind(int i, const std::optional<int64_t>& v);
  Statement& bind_blob(int i, const void* data, size_t size);
  Statement& bind_null(int i);
  // One step: true with a row to read, false when done; an error otherwise.
  tl::expected<bool, Error> step();
  // Steps to the end (for writes) and resets for the next use.
  tl::expected<void, Error> run();
  void reset();

  bool is_null(int col) const { return sqlite3_column_type(stmt_.get(), col) == SQLITE_NULL; }
  int64_t int64(int col) const { return sqlite3_column_int64(stmt_.get(), col); }
  double real(int col) const { return sqlite3_column_double(stmt_.get(), col); }
  std::string text(int col) const;
  std::optional<std::string> text_or_null(int col) const;
  std::vector<unsigned char> blob(int col) const;
  sqlite3_stmt* get() const { return stmt_.get(); }

 private:
  struct Finalize {
    void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
  };
  std::unique_ptr<sqlite3_stmt, Finalize> stmt_;
};

// BEGIN IMMEDIATE on construction; ROLLBACK unless commit() ran.
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

}  // namespace mw::store
