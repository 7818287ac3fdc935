// The PostgreSQL backend (libpq): one database that a fleet of agents writes
// into at once. Statements run once unnamed (no extra round trip) and are
// prepared on the server from their second run on; bulk loads use COPY.
#include "store/database.hpp"

#include <libpq-fe.h>

#include <cstdlib>
#include <cstring>

namespace mw::store {
namespace {

using Connection = std::shared_ptr<PGconn>;

struct ClearResult {
  void operator()(PGresult* r) const { PQclear(r); }
};
using Result = std::unique_ptr<PGresult, ClearResult>;

// The server's message without its "ERROR:  " and newline; the SQLSTATE
// where a caller may retry (serialization failure, deadlock: class 40).
Error message_of(const std::string& name, const PGresult* r, PGconn* c) {
  std::string m = r ? PQresultErrorMessage(r) : PQerrorMessage(c);
  if (m.empty()) m = PQerrorMessage(c);
  if (m.rfind("ERROR:  ", 0) == 0) m.erase(0, 8);
  while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
  if (auto nl = m.find('\n'); nl != std::string::npos) m.resize(nl);
  if (r)
    if (const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE); state && std::strncmp(state, "40", 2) == 0)
      m += std::string(" (SQLSTATE ") + state + ")";
  return name + ": " + m;
}

// ?N (the store's portable spelling) becomes $N, outside quoted text.
std::string to_dollar_parameters(std::string_view sql) {
  std::string out;
  out.reserve(sql.size());
  char quote = 0;
  for (size_t i = 0; i < sql.size(); ++i) {
    char c = sql[i];
    if (quote) {
      if (c == quote) quote = 0;
    } else if (c == '\'' || c == '"') {
      quote = c;
    } else if (c == '?' && i + 1 < sql.size() && sql[i + 1] >= '0' && sql[i + 1] <= '9') {
      c = '$';
    }
    out.push_back(c);
  }
  return out;
}

// Parameters in libpq's form: text for numbers and strings, binary for bytes.
struct Parameters {
  std::vector<std::string> text;
  std::vector<const char*> values;
  std::vector<int> lengths, formats;
  std::vector<Oid> types;

  explicit Parameters(std::span<const Value> params) {
    size_t n = params.size();
    text.resize(n);
    values.assign(n, nullptr);
    lengths.assign(n, 0);
    formats.assign(n, 0);
    types.assign(n, 0);
    for (size_t i = 0; i < n; ++i) {
      const Value& v = params[i];
      if (auto x = std::get_if<int64_t>(&v)) {
        text[i] = std::to_string(*x);
        values[i] = text[i].c_str();
        types[i] = 20;  // int8
      } else if (auto d = std::get_if<double>(&v)) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.17g", *d);
        text[i] = buf;
        values[i] = text[i].c_str();
        types[i] = 701;  // float8
      } else if (auto s = std::get_if<std::string>(&v)) {
        values[i] = s->c_str();
        types[i] = 25;  // text
      } else if (auto b = std::get_if<Blob>(&v)) {
        values[i] = reinterpret_cast<const char*>(b->bytes.data());
        lengths[i] = static_cast<int>(b->bytes.size());
        formats[i] = 1;
        types[i] = 17;  // bytea
      }
    }
  }
};

class PgStatement final : public StatementBackend {
 public:
  PgStatement(Connection conn, std::string sql, std::string statement_name, std::string db_name)
      : conn_(std::move(conn)), sql_(std::move(sql)), statement_(std::move(statement_name)), name_(std::move(db_name)) {}
  ~PgStatement() override {
    result_.reset();
    if (prepared_) Result(PQexec(conn_.get(), ("DEALLOCATE " + statement_).c_str()));
  }

  tl::expected<bool, Error> step(std::span<const Value> params) override {
    if (!result_) {
      if (auto ok = execute(params); !ok) return tl::unexpected(ok.error());
      row_ = -1;
    }
    return ++row_ < PQntuples(result_.get());
  }
  void reset() override { result_.reset(); }

  ColumnType type(int col) const override {
    if (PQgetisnull(result_.get(), row_, col)) return ColumnType::null;
    switch (PQftype(result_.get(), col)) {
      case 16: case 20: case 21: case 23: case 26: return ColumnType::integer;  // bool, int8/2/4, oid
      case 700: case 701: return ColumnType::real;
      case 17: return ColumnType::blob;
      case 1700: {  // numeric: sum() of bigint; an integer unless it has a fraction
        std::string_view v = PQgetvalue(result_.get(), row_, col);
        return v.find_first_of(".eEN") == std::string_view::npos ? ColumnType::integer : ColumnType::real;
      }
      default: return ColumnType::text;
    }
  }
  int64_t int64(int col) const override {
    const char* v = PQgetvalue(result_.get(), row_, col);
    if (PQftype(result_.get(), col) == 16) return v[0] == 't' ? 1 : 0;
    return std::strtoll(v, nullptr, 10);
  }
  double real(int col) const override { return std::strtod(PQgetvalue(result_.get(), row_, col), nullptr); }
  std::string text(int col) const override {
    return std::string(PQgetvalue(result_.get(), row_, col), static_cast<size_t>(PQgetlength(result_.get(), row_, col)));
  }
  std::vector<unsigned char> blob(int col) const override {
    size_t n = 0;
    auto p = PQunescapeBytea(reinterpret_cast<const unsigned char*>(PQgetvalue(result_.get(), row_, col)), &n);
    if (!p) return {};
    std::vector<unsigned char> out(p, p + n);
    PQfreemem(p);
    return out;
  }

 private:
  tl::expected<void, Error> execute(std::span<const Value> params) {
    Parameters p(params);
    int n = static_cast<int>(params.size());
    PGconn* c = conn_.get();
    if (runs_++ == 0) {
      result_.reset(PQexecParams(c, sql_.c_str(), n, p.types.data(), p.values.data(), p.lengths.data(),
                                 p.formats.data(), 0));
    } else {
      if (!prepared_) {
        Result r(PQprepare(c, statement_.c_str(), sql_.c_str(), n, p.types.data()));
        if (PQresultStatus(r.get()) != PGRES_COMMAND_OK) return tl::unexpected(message_of(name_, r.get(), c));
        prepared_ = true;
      }
      result_.reset(PQexecPrepared(c, statement_.c_str(), n, p.values.data(), p.lengths.data(), p.formats.data(), 0));
    }
    auto status = PQresultStatus(result_.get());
    if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) {
      Error e = message_of(name_, result_.get(), c);
      result_.reset();
      return tl::unexpected(e);
    }
    return {};
  }

  Connection conn_;
  std::string sql_, statement_, name_;
  Result result_;
  int row_ = -1;
  uint64_t runs_ = 0;
  bool prepared_ = false;
};

// COPY's text format: backslash escapes, \N for NULL, bytea as \\x<hex>.
void append_copy_field(std::string& out, const Value& v) {
  if (auto x = std::get_if<int64_t>(&v)) {
    out += std::to_string(*x);
  } else if (auto d = std::get_if<double>(&v)) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.17g", *d);
    out += buf;
  } else if (auto s = std::get_if<std::string>(&v)) {
    for (char c : *s) {
      switch (c) {
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default: out.push_back(c);
      }
    }
  } else if (auto b = std::get_if<Blob>(&v)) {
    static constexpr char kHex[] = "0123456789abcdef";
    out += "\\\\x";
    for (unsigned char c : b->bytes) {
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  } else {
    out += "\\N";
  }
}

class PgConnection final : public ConnectionBackend {
 public:
  static tl::expected<std::unique_ptr<ConnectionBackend>, Error> open(const std::string& url, bool read_only) {
    std::string name = redact_url(url);
    Connection conn(PQconnectdb(url.c_str()), &PQfinish);
    if (!conn) return tl::unexpected(name + ": out of memory");
    if (PQstatus(conn.get()) != CONNECTION_OK) {
      std::string m = PQerrorMessage(conn.get());
      while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
      return tl::unexpected(name + ": cannot connect: " + m);
    }
    // NOTICEs ("relation already exists, skipping") are not for our users.
    PQsetNoticeProcessor(conn.get(), [](void*, const char*) {}, nullptr);
    auto c = std::unique_ptr<PgConnection>(new PgConnection(std::move(conn), name));
    // Records' JSON is TOASTed: LZ4 (PostgreSQL 14+, when built with it) cut a
    // 20,000-record import from 4.8 s to 3.8 s here at the same size. Where the
    // server lacks it, pglz stays.
    (void)c->exec("SET default_toast_compression = 'lz4'");
    // A batch of staged records (5,000 of ~7 KB) is read by several merge
    // statements: in the session's temp buffers (8 MB by default) instead of
    // from disk each time. Set before the session first touches a temp table.
    (void)c->exec("SET temp_buffers = '128MB'");
    if (read_only)
      if (auto ok = c->exec("SET default_transaction_read_only = on"); !ok) return tl::unexpected(ok.error());
    return std::unique_ptr<ConnectionBackend>(std::move(c));
  }

  Dialect dialect() const override { return Dialect::postgresql; }
  std::string begin_sql() const override { return "BEGIN"; }

  tl::expected<void, Error> exec(const std::string& sql) override {
    Result r(PQexec(conn_.get(), sql.c_str()));
    auto status = PQresultStatus(r.get());
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) return tl::unexpected(message_of(name_, r.get(), conn_.get()));
    return {};
  }

  tl::expected<std::unique_ptr<StatementBackend>, Error> prepare(std::string_view sql) override {
    return std::unique_ptr<StatementBackend>(
        new PgStatement(conn_, to_dollar_parameters(sql), "mw_" + std::to_string(++statements_), name_));
  }

  tl::expected<void, Error> bulk_insert(const std::string& table, const std::vector<std::string>& columns,
                                        const std::vector<Value>& cells) override {
    if (cells.empty()) return {};
    std::string sql = "COPY " + table + "(";
    for (size_t i = 0; i < columns.size(); ++i) sql += (i ? "," : "") + columns[i];
    Result start(PQexec(conn_.get(), (sql + ") FROM STDIN").c_str()));
    if (PQresultStatus(start.get()) != PGRES_COPY_IN) return tl::unexpected(message_of(name_, start.get(), conn_.get()));
    std::string buffer;
    auto send = [&]() -> bool {
      bool ok = PQputCopyData(conn_.get(), buffer.data(), static_cast<int>(buffer.size())) == 1;
      buffer.clear();
      return ok;
    };
    bool ok = true;
    for (size_t i = 0; i < cells.size() && ok; ++i) {
      append_copy_field(buffer, cells[i]);
      bool end_of_row = (i + 1) % columns.size() == 0;
      buffer.push_back(end_of_row ? '\n' : '\t');
      if (end_of_row && buffer.size() >= (1u << 20)) ok = send();
    }
    if (ok && !buffer.empty()) ok = send();
    if (PQputCopyEnd(conn_.get(), ok ? nullptr : "mitmwatch: sending failed") != 1 || !ok)
      ok = false;
    Error error;
    while (PGresult* raw = PQgetResult(conn_.get())) {
      Result r(raw);
      if (PQresultStatus(raw) != PGRES_COMMAND_OK && error.empty()) error = message_of(name_, raw, conn_.get());
    }
    if (!error.empty()) return tl::unexpected(error);
    if (!ok) return tl::unexpected(name_ + ": COPY into " + table + " failed: " + PQerrorMessage(conn_.get()));
    return {};
  }

 private:
  PgConnection(Connection conn, std::string name) : conn_(std::move(conn)), name_(std::move(name)) {}
  Connection conn_;
  std::string name_;
  uint64_t statements_ = 0;
};

}  // namespace

tl::expected<std::unique_ptr<ConnectionBackend>, Error> open_postgresql(const std::string& url, bool read_only) {
  return PgConnection::open(url, read_only);
}

}  // namespace mw::store
