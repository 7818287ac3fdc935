// Replays fuzz inputs without libFuzzer, so every test run (under ASan and
// UBSan) exercises each fuzz target: every file of the corpus folders given,
// then N deterministic mutations in all (bit flips, truncations, splices),
// spread over the inputs in turn: the cost stays N however the corpus
// grows with each campaign. `fuzz_x DIR... [--mutations N]`.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int main(int argc, char** argv) {
  std::vector<std::vector<uint8_t>> inputs;
  long mutations = 2000;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--mutations") == 0 && i + 1 < argc) {
      mutations = std::atol(argv[++i]);
      continue;
    }
    std::filesystem::path p(argv[i]);
    std::vector<std::filesystem::path> files;
    if (std::filesystem::is_directory(p)) {
      for (const auto& e : std::filesystem::recursive_directory_iterator(p))
        if (e.is_regular_file()) files.push_back(e.path());
    } else {
      files.push_back(p);
    }
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
      std::ifstream in(f, std::ios::binary);
      inputs.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
  }
  if (inputs.empty()) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR_OR_FILE... [--mutations N]\n", argv[0]);
    return 2;
  }
  std::mt19937_64 rng(0x6d69746d);  // fixed: the same inputs every run
  size_t runs = 0;
  for (const auto& input : inputs) {
    LLVMFuzzerTestOneInput(input.data(), input.size());
    ++runs;
  }
  for (long m = 0; m < mutations; ++m) {
    {
      const auto& input = inputs[static_cast<size_t>(m) % inputs.size()];
      std::vector<uint8_t> x = input;
      switch (rng() % 4) {
        case 0:  // flip a few bits
          for (int k = 0; k < 1 + static_cast<int>(rng() % 4) && !x.empty(); ++k) x[rng() % x.size()] ^= 1u << (rng() % 8);
          break;
        case 1:  // truncate
          x.resize(x.empty() ? 0 : rng() % x.size());
          break;
        case 2: {  // overwrite a byte with an edge value
          static const uint8_t edges[] = {0x00, 0xff, 0x7f, 0x80, 0x30, 0x82, '\n', '/', ':', '[', '"'};
          if (!x.empty()) x[rng() % x.size()] = edges[rng() % sizeof edges];
          break;
        }
        case 3: {  // splice with another input
          const auto& other = inputs[rng() % inputs.size()];
          size_t cut = x.empty() ? 0 : rng() % x.size();
          x.resize(cut);
          if (!other.empty()) x.insert(x.end(), other.begin() + static_cast<long>(rng() % other.size()), other.end());
          break;
        }
      }
      LLVMFuzzerTestOneInput(x.data(), x.size());
      ++runs;
    }
  }
  std::printf("%zu inputs, %zu runs: no crash\n", inputs.size(), runs);
  return 0;
}
