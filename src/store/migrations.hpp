// The store's schema, as numbered migrations per dialect (the .sql files in
// src/store/migrations/, compiled in). A store records the version it is at
// in meta.schema_version; opening it for writing applies what it lacks.
#pragma once

#include "store/database.hpp"

#include <string_view>
#include <vector>

namespace mw::store {

struct Migration {
  int version;
  std::string_view name;
  std::string_view sql;
};

const std::vector<Migration>& migrations(Dialect dialect);
int latest_schema_version();
// The version a store is at: 0 when it has no schema yet.
tl::expected<int, Error> schema_version(Database& db);
// Applies the missing migrations in one transaction (serialized between
// processes: BEGIN IMMEDIATE on SQLite, an advisory lock on PostgreSQL).
// The version reached; an error for a store newer than this program.
tl::expected<int, Error> migrate(Database& db);

}  // namespace mw::store
