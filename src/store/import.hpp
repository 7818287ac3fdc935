// Loading JSON Lines files into the store: each file one run (named by its
// first record, so importing a file again, or after it grew by --resume, adds
// only what the store lacks). The file is only read: a torn last line, as a
// killed writer leaves, is skipped and counted.
#pragma once

#include "store/store.hpp"

#include <functional>
#include <string>

namespace mw::store {

struct ImportStats {
  int64_t run_id = 0;
  uint64_t lines = 0, added = 0, already = 0;
  bool torn_last_line = false;
};

// `info.command` empty: the kind of the first record. `progress` gets bytes read.
// A line that is not a mitmwatch record stops the import with an error naming
// file and line; what came before it is committed, in batches of `batch`.
// With `within`, everything goes into that open transaction instead (flushed
// every batch, committed by the caller, the run left for the caller to finish):
// a fleet agent stores a job's records with the job's completion, or not at all.
tl::expected<ImportStats, Error> import_jsonl(Store& store, const std::string& path, RunInfo info,
                                              const std::function<void(uint64_t)>& progress = {},
                                              size_t batch = 5000, WriteTransaction* within = nullptr);

}  // namespace mw::store
