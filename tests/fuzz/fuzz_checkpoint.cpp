// libFuzzer harness: the checkpoint container (parse_checkpoint in
// nsl/io/checkpoint.hpp) and, for a container that parses, the model file on
// top of it (nsl/io/model_file.hpp): its spec (read_model_file) and the
// network rebuilt from it (load_model). The first byte chooses whether the
// CRC-32 is made valid (crc_mode.hpp).
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "crc_mode.hpp"
#include "nsl/io/checkpoint.hpp"
#include "nsl/io/model_file.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::vector<unsigned char> bytes = nsl_fuzz::crc_mode_bytes(data, size);
  try {
    nsl::Checkpoint ck = nsl::parse_checkpoint(bytes.data(), bytes.size(), "fuzz.nslckpt");
    const nsl::ModelFile file = nsl::read_model_file(std::move(ck), "fuzz.nslckpt");
    nsl::load_model<float>(file);
  } catch (const nsl::Error&) {
  }
  return 0;
}
