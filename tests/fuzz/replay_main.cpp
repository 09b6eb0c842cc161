// Replays inputs through one libFuzzer harness without libFuzzer, so that
// ctest runs the seed and regression corpora on every build (with the
// project's compiler, and under AddressSanitizer + UBSan in the sanitizer
// build): each file named, and each file in each directory named, is read
// and passed once to LLVMFuzzerTestOneInput. A harness lets only nsl::Error
// escape its parser, so a crash, a sanitizer report or any other exception
// fails the replay. A directory with no file also fails (a corpus that went
// missing would otherwise pass without testing anything).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

std::vector<std::uint8_t> read_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<std::uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

}  // namespace

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s FILE_OR_DIRECTORY...\n", argv[0]);
    return 2;
  }
  std::size_t total = 0;
  for (int a = 1; a < argc; ++a) {
    std::vector<fs::path> files;
    std::error_code ec;
    if (fs::is_directory(argv[a], ec)) {
      for (const auto& entry : fs::directory_iterator(argv[a], ec))
        if (entry.is_regular_file()) files.push_back(entry.path());
      std::sort(files.begin(), files.end());
      if (files.empty()) {
        std::fprintf(stderr, "replay: %s: no input files\n", argv[a]);
        return 1;
      }
    } else if (fs::is_regular_file(argv[a], ec)) {
      files.push_back(argv[a]);
    } else {
      std::fprintf(stderr, "replay: %s: no such file or directory\n", argv[a]);
      return 1;
    }
    for (const fs::path& file : files) {
      const std::vector<std::uint8_t> bytes = read_bytes(file);
      // A copy of exactly the file's size, so the sanitizers see any read past its end.
      std::uint8_t* copy = new std::uint8_t[bytes.size() + (bytes.empty() ? 1 : 0)];
      std::copy(bytes.begin(), bytes.end(), copy);
      LLVMFuzzerTestOneInput(copy, bytes.size());
      delete[] copy;
      ++total;
    }
  }
  std::printf("replay: %zu inputs, none crashed\n", total);
  return 0;
}
