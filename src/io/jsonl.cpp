#include "io/jsonl.hpp"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <sys/stat.h>

namespace mw::io {

tl::expected<JsonlWriter, std::string> JsonlWriter::open(const std::string& path, bool append) {
  JsonlWriter w;
  w.path_ = path;
  if (path == "-") {
    w.fd_ = STDOUT_FILENO;
    return w;
  }
  int flags = O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (append ? 0 : O_TRUNC);
  w.owned_.reset(::open(path.c_str(), flags, 0644));
  if (!w.owned_) return tl::unexpected(path + ": cannot open for writing: " + std::strerror(errno));
  w.fd_ = w.owned_.get();
  return w;
}

tl::expected<void, std::string> JsonlWriter::write(const nlohmann::json& record) {
  return write_line(record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

tl::expected<void, std::string> JsonlWriter::write(const nlohmann::ordered_json& record) {
  return write_line(record.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace));
}

tl::expected<void, std::string> JsonlWriter::write_line(std::string line) {
  line.push_back('\n');
  size_t done = 0;
  // One write(2) for a regular file in the common case; loop for pipes.
  while (done < line.size()) {
    ssize_t n = ::write(fd_, line.data() + done, line.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return tl::unexpected(path_ + ": write failed: " + std::strerror(errno));
    }
    done += static_cast<size_t>(n);
  }
  return {};
}

tl::expected<void, std::string> JsonlWriter::sync() {
  if (owned_ && ::fsync(fd_) != 0) return tl::unexpected(path_ + ": fsync failed: " + std::strerror(errno));
  return {};
}

tl::expected<RecoveredLines, std::string> read_complete_lines(std::istream& in, const std::string& source,
                                                              const std::function<void(const nlohmann::json&)>& visit) {
  RecoveredLines out;
  std::string line;
  size_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (in.eof()) break;  // no '\n' after it: a torn last line
    out.complete_end = in.tellg();
    if (line.empty()) continue;
    auto record = nlohmann::json::parse(line, nullptr, false);
    if (record.is_discarded())
      return tl::unexpected(source + ":" + std::to_string(line_no) + ": not a JSON record; refusing to resume");
    visit(record);
    ++out.records;
  }
  return out;
}

tl::expected<size_t, std::string> recover(const std::string& path,
                                          const std::function<void(const nlohmann::json&)>& visit) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0 && errno == ENOENT) return 0;
    return tl::unexpected(path + ": cannot open for reading");
  }
  auto read = read_complete_lines(in, path, visit);
  if (!read) return tl::unexpected(read.error());
  in.close();
  struct stat st;
  if (::stat(path.c_str(), &st) == 0 && st.st_size > read->complete_end) {
    if (::truncate(path.c_str(), read->complete_end) != 0)
      return tl::unexpected(path + ": cannot cut the torn last line: " + std::strerror(errno));
  }
  return read->records;
}

}  // namespace mw::io
