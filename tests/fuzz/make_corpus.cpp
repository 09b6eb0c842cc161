// Writes the fuzzers' seed corpora (tests/fuzz/corpus/<harness>/): small
// valid files of every reader, made by nsl's own writers, and the malformed
// cases the unit tests name; and the hand-made part of the regression corpus
// (tests/fuzz/regressions/<harness>/made-*): the findings the fuzzing was
// started for. Both are committed; this program says how they were made and
// makes them again (scripts/fuzz.sh --make-corpus).
// Usage: make_corpus CORPUS_DIR REGRESSIONS_DIR
#include <zlib.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "nsl/core/bytes.hpp"
#include "nsl/core/random.hpp"
#include "nsl/data/glyphs.hpp"
#include "nsl/io/checkpoint.hpp"
#include "nsl/io/model_file.hpp"
#include "nsl/io/npy.hpp"

namespace fs = std::filesystem;

namespace {

fs::path out_dir;         // the seed corpora
fs::path regression_dir;  // the regression corpora

void write_to(const fs::path& root, const std::string& harness, const std::string& name, const std::string& bytes) {
  const fs::path dir = root / harness;
  fs::create_directories(dir);
  std::ofstream(dir / name, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
}
void write(const std::string& harness, const std::string& name, const std::string& bytes) {
  write_to(out_dir, harness, name, bytes);
}
void regression(const std::string& harness, const std::string& name, const std::string& bytes) {
  write_to(regression_dir, harness, "made-" + name, bytes);
}

std::string read(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// gzip (the gzip wrapper, zlib's default level) of `bytes`.
std::string gzip_of(const std::string& bytes) {
  z_stream zs{};
  deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&zs, uLong(bytes.size())) + 64, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
  zs.avail_in = uInt(bytes.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = uInt(out.size());
  deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

std::string npy_file(const std::string& dict, const std::string& data, int major = 1) {
  std::string out("\x93NUMPY", 6);
  out += char(major);
  out += '\0';
  const int length_size = major == 1 ? 2 : 4;
  for (int i = 0; i < length_size; ++i) out += char((dict.size() >> (8 * i)) & 0xFF);
  return out + dict + data;
}

std::string idx_file(unsigned type, const std::vector<std::uint32_t>& dims, const std::string& data) {
  std::string out = {'\0', '\0', char(type), char(dims.size())};
  for (std::uint32_t d : dims)
    for (int s = 24; s >= 0; s -= 8) out += char((d >> s) & 0xFF);
  return out + data;
}

std::string ramp(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = char(i * 37 % 256);
  return s;
}

// A tiny model of `spec` saved by save_model: the bytes of a real model file.
std::string model_file(nsl::ModelSpec spec) {
  nsl::Rng rng(1);
  nsl::Model<float> model = nsl::build_model<float>(spec, rng);
  const fs::path path = out_dir / "model.tmp";
  nsl::save_model(path.string(), model);
  std::string bytes = read(path);
  fs::remove(path);
  return bytes;
}

void npy_corpus() {
  const std::string h = "npy";
  nsl::Tensor<float> f(nsl::Shape{2, 3});
  for (nsl::index i = 0; i < f.size(); ++i) f[i] = 0.5f * float(i) - 1.0f;
  const fs::path tmp = out_dir / "t.npy";
  nsl::save_npy(tmp.string(), f);
  write(h, "float32_2x3.npy", read(tmp));
  nsl::Tensor<double> d(nsl::Shape{1, 1, 2, 2});
  for (nsl::index i = 0; i < d.size(); ++i) d[i] = 1.0 / double(i + 1);
  nsl::save_npy(tmp.string(), d);
  write(h, "float64_1x1x2x2.npy", read(tmp));
  fs::remove(tmp);
  write(h, "empty_0x3.npy", npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (0, 3), }", ""));
  write(h, "version2.npy", npy_file("{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }", std::string(8, '\1'), 2));
  write(h, "big_endian.npy", npy_file("{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }", std::string(4, '\0')));
  write(h, "fortran.npy", npy_file("{'descr': '<f4', 'fortran_order': True, 'shape': (1,), }", std::string(4, '\0')));
  write(h, "int32.npy", npy_file("{'descr': '<i4', 'fortran_order': False, 'shape': (1,), }", std::string(4, '\0')));
  write(h, "truncated.npy", npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", std::string(6, '\0')));
  write(h, "bad_magic.npy", "\x93NUMPZ\x01\x00");
}

void idx_corpus() {
  const std::string h = "idx";
  const std::string images = idx_file(0x08, {2, 4, 4}, ramp(32));
  const std::string labels = idx_file(0x08, {3}, std::string("\x01\x09\x00", 3));
  write(h, "images_2x4x4", images);
  write(h, "labels_3", labels);
  write(h, "images_2x4x4.gz", gzip_of(images));
  write(h, "labels_3.gz", gzip_of(labels));
  write(h, "two_members.gz", gzip_of(images.substr(0, 10)) + gzip_of(images.substr(10)));
  write(h, "float32_type", idx_file(0x0D, {1}, std::string(4, '\0')));
  write(h, "rank0", idx_file(0x08, {}, ""));
  write(h, "truncated", images.substr(0, images.size() - 3));
  write(h, "truncated.gz", gzip_of(images).substr(0, 20));
}

void cifar_corpus() {
  const std::string h = "cifar";
  // The first byte chooses CIFAR-10 (0) or CIFAR-100 (1); see fuzz_cifar.cpp.
  std::string ten(1, '\0'), hundred(1, '\1');
  for (int r = 0; r < 2; ++r) {
    ten += char(r * 7);
    ten += ramp(3072);
    hundred += char(r);       // coarse label
    hundred += char(r * 50);  // fine label
    hundred += ramp(3072);
  }
  write(h, "cifar10_2_records", ten);
  write(h, "cifar100_2_records", hundred);
  write(h, "cifar10_partial_record", ten.substr(0, 1000));
  std::string bad_label = ten;
  bad_label[1] = char(10);
  write(h, "cifar10_label_10", bad_label);
}

void checkpoint_corpus() {
  const std::string h = "checkpoint";
  // The first byte chooses whether the harness rewrites the CRC (odd) or
  // keeps it (even); see crc_mode.hpp.
  nsl::Checkpoint ck;
  ck.set("epoch", "3");
  ck.set("lr", "0.01");
  nsl::Tensor<float> w(nsl::Shape{2, 2});
  for (nsl::index i = 0; i < w.size(); ++i) w[i] = float(i);
  ck.add("w", w);
  ck.add("empty", nsl::Tensor<float>(nsl::Shape{0, 5, 7}));
  const fs::path tmp = out_dir / "t.ckpt";
  nsl::save_checkpoint(tmp.string(), ck);
  const std::string plain = read(tmp);
  fs::remove(tmp);
  write(h, "checkpoint_keep_crc", std::string(1, '\0') + plain);
  write(h, "checkpoint_fix_crc", std::string(1, '\1') + plain);

  // Tiny models of each kind, as save_model writes them.
  nsl::ModelSpec s;
  s.cnn9.widths[0] = 2;
  s.cnn9.widths[1] = 2;
  s.cnn9.widths[2] = 2;
  s.cnn9.attention_widths[0] = 2;
  s.cnn9.attention_widths[1] = 2;
  s.cnn9.attention_widths[2] = 2;
  s.cnn9.predictor_hidden = 2;
  s.input_size = 8;
  s.classes = 2;
  s.dataset = "fuzz";
  for (nsl::Variant v : {nsl::Variant::plain, nsl::Variant::static_dns, nsl::Variant::dynamic_dns,
                         nsl::Variant::dynamic_uns, nsl::Variant::sphere_attention}) {
    s.variant = v;
    write(h, std::string("cnn9_") + nsl::to_string(v), std::string(1, '\1') + model_file(s));
  }
  nsl::ModelSpec c;
  c.network = nsl::Network::conv4;
  c.variant = nsl::Variant::dynamic_dns;
  c.conv4.width = 2;
  c.conv4.predictor_hidden = 2;
  c.input_size = 8;
  c.dataset = "fuzz";
  c.head_options.rank = 1;
  c.head_options.hidden = 2;
  for (nsl::HeadKind k : {nsl::HeadKind::euclidean, nsl::HeadKind::static_ns, nsl::HeadKind::dynamic_ns}) {
    c.head = k;
    write(h, std::string("conv4_") + nsl::to_string(k), std::string(1, '\1') + model_file(c));
  }
}

void glyphs_corpus() {
  const std::string h = "glyphs";
  nsl::GlyphSet set;
  set.seed = 7;
  set.size = 2;
  set.renders = 2;
  set.scripts = {{"Latin", nsl::GlyphSplit::background}, {"Greek", nsl::GlyphSplit::evaluation}};
  set.fonts = {"a.ttf", "b.otf"};
  set.classes = {{0, 'A'}, {1, 0x3B1}};
  set.render_fonts = {0, 1, 1, 0};
  set.pixels.assign(16, 0);
  for (std::size_t i = 0; i < set.pixels.size(); ++i) set.pixels[i] = std::uint8_t(i * 16);
  const std::string bytes = nsl::glyph_file_bytes(set);
  write(h, "glyphs_keep_crc", std::string(1, '\0') + bytes);
  write(h, "glyphs_fix_crc", std::string(1, '\1') + bytes);
  write(h, "glyphs_truncated", std::string(1, '\1') + bytes.substr(0, 40));
}

// The findings that started the fuzzing, one input each.
void regressions() {
  // Glyph cache: a short file whose valid CRC covers counts of billions
  // (load_glyphs once sized classes x renders from them before checking the
  // bytes left: gigabytes zero-filled, or std::bad_alloc).
  std::string glyphs("NSLGLYPH", 8);
  nsl::put_le_u32(glyphs, 1);
  nsl::put_le_u64(glyphs, 0);
  for (std::uint32_t v : {28u, 0x7FFFFFFFu, 1u, 1u, 1u}) nsl::put_le_u32(glyphs, v);  // size renders scripts classes fonts
  nsl::put_u8(glyphs, 0);
  nsl::put_string_le_u16(glyphs, "L");
  nsl::put_string_le_u16(glyphs, "f");
  nsl::put_le_u32(glyphs, 0);
  nsl::put_le_u32(glyphs, 65);
  glyphs += std::string(2, '\0');
  nsl::put_le_u32(glyphs, nsl::crc32_of(reinterpret_cast<const unsigned char*>(glyphs.data()), glyphs.size()));
  regression("glyphs", "counts-beyond-the-bytes", std::string(1, '\0') + glyphs);
  // IDX: 64 MiB of zeros gzip-compressed (inflated whole before the header,
  // whose type code 0x00 is wrong, was looked at); and a valid header with
  // 64 MiB of zeros after its data (inflated up to the limit).
  regression("idx", "gzip-zeros-64MiB", gzip_of(std::string(std::size_t(64) << 20, '\0')));
  regression("idx", "gzip-trailing-64MiB", gzip_of(idx_file(0x08, {2}, "ab") + std::string(std::size_t(64) << 20, '\0')));
  // Empty arrays with absurd extents, which loaded (empty extents are now
  // counted as 1 in the overflow guard).
  regression("npy", "empty-absurd-extent",
             npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (0, 4611686018427387904), }", ""));
  regression("idx", "empty-absurd-extents", idx_file(0x08, {0, 0xFFFFFFFFu, 0xFFFFFFFFu}, ""));
  std::string ck("NSLCKPT", 8);
  nsl::put_le_u32(ck, 1);
  nsl::put_le_u32(ck, 0);  // no metadata
  nsl::put_le_u32(ck, 1);  // one tensor
  nsl::put_string_le_u32(ck, "w");
  nsl::put_u8(ck, 2);
  nsl::put_le_u64(ck, 0);
  nsl::put_le_u64(ck, std::uint64_t(1) << 62);
  nsl::put_le_u32(ck, nsl::crc32_of(reinterpret_cast<const unsigned char*>(ck.data()), ck.size()));
  regression("checkpoint", "empty-absurd-extents", std::string(1, '\0') + ck);
  // A tiny model file whose spec asks for stage widths of 100000 (load_model
  // built that network, 360 GB of weights, before it found the tensors
  // missing).
  nsl::ModelSpec spec;
  spec.cnn9.widths[0] = spec.cnn9.widths[1] = spec.cnn9.widths[2] = 2;
  spec.input_size = 8;
  spec.classes = 2;
  nsl::Rng rng(1);
  nsl::Model<float> model = nsl::build_model<float>(spec, rng);
  nsl::Checkpoint huge = nsl::model_to_checkpoint(model);
  huge.set("widths", "2,100000,2");
  const fs::path tmp = regression_dir / "huge.tmp";
  nsl::save_checkpoint(tmp.string(), huge);
  regression("checkpoint", "spec-wider-than-its-tensors", std::string(1, '\0') + read(tmp));
  fs::remove(tmp);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: make_corpus CORPUS_DIR REGRESSIONS_DIR\n");
    return 2;
  }
  out_dir = argv[1];
  regression_dir = argv[2];
  fs::create_directories(out_dir);
  npy_corpus();
  idx_corpus();
  cifar_corpus();
  checkpoint_corpus();
  glyphs_corpus();
  regressions();
  std::printf("make_corpus: wrote the seed corpora under %s and the made regressions under %s\n", argv[1], argv[2]);
  return 0;
}
