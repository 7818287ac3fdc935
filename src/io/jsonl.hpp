// JSON Lines files that survive a killed writer: each record is one write(2)
// of a whole line to an O_APPEND file, so a reader sees whole lines or none
// but the last; resuming cuts a torn last line before appending.
#pragma once

#include "net/fd.hpp"

#include <nlohmann/json.hpp>
#include <tl/expected.hpp>

#include <functional>
#include <istream>
#include <string>

namespace mw::io {

class JsonlWriter {
 public:
  // path "-" writes to stdout. `append` keeps what the file holds.
  static tl::expected<JsonlWriter, std::string> open(const std::string& path, bool append);
  tl::expected<void, std::string> write(const nlohmann::json& record);
  tl::expected<void, std::string> write(const nlohmann::ordered_json& record);
  tl::expected<void, std::string> write_line(std::string line);  // adds '\n'
  tl::expected<void, std::string> sync();

 private:
  net::Fd owned_;
  int fd_ = -1;
  std::string path_;
};

// Reads every complete line of an existing JSON Lines file, passing each
// parsed record to `visit`, and truncates a torn last line (one without '\n')
// so appending continues cleanly. A missing file is an empty one. A complete
// line that is not JSON is an error naming file and line.
tl::expected<size_t, std::string> recover(const std::string& path,
                                          const std::function<void(const nlohmann::json&)>& visit);

// What recover() reads, from any stream: the records visited and where the
// last complete line ends. `source` names the input in errors.
struct RecoveredLines {
  size_t records = 0;
  std::streamoff complete_end = 0;
};
tl::expected<RecoveredLines, std::string> read_complete_lines(std::istream& in, const std::string& source,
                                                              const std::function<void(const nlohmann::json&)>& visit);

}  // namespace mw::io
