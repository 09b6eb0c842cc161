// nsl/data/augment.hpp — the reference data augmentation and batching.
//
// The reference CIFAR recipe of the NSL paper pads each training image by 4
// pixels with reflection, takes a random 32 x 32 crop of the padded image and
// mirrors it left-right with probability 1/2. Everything works on N x C x H x W
// float batches:
//
//   reflect_pad(images, pad)          N x C x (H+2p) x (W+2p), numpy's
//                                     np.pad(mode='reflect'): the edge pixel
//                                     is not repeated, [a b c d] with pad 2 is
//                                     [c b a b c d c b]; needs pad < H, pad < W
//   random_crop_flip(source, pad, flip, rng, out)
//                                     per image: a random H x W window of the
//                                     reflect-padded image, offsets uniform in
//                                     [0, 2*pad] for rows and columns, then,
//                                     if `flip`, a left-right mirror with
//                                     probability 1/2 (pass flip = false for
//                                     data where a mirror changes the meaning,
//                                     e.g. digits or text)
//   shuffled_indices(n, rng)          a random permutation of 0..n-1
//   gather_batch(data, order, start, count, images, labels)
//                                     images order[start .. start+count) of a
//                                     Dataset copied into a batch
//
// Randomness comes only from the caller's nsl::Rng, so a seed fixes every
// batch on every platform. random_crop_flip draws, for each image in batch
// order, rng.below(2*pad+1) for the row offset, then rng.below(2*pad+1) for
// the column offset, then (only when flip is on) rng.below(2), 1 meaning
// mirror. shuffled_indices is Fisher-Yates from the last position down, the
// swap partner of position i drawn with rng.below(i+1).
//
// The crop reads the source through the reflection directly, so no padded
// copy is built. Output tensors are resized only when their shape differs,
// so reusing them across batches allocates once.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "nsl/core/error.hpp"
#include "nsl/core/random.hpp"
#include "nsl/core/shape.hpp"
#include "nsl/core/tensor.hpp"
#include "nsl/data/idx.hpp"

namespace nsl {

namespace detail::augment {

/// Position `i` in [-(n-1), 2(n-1)] reflected into [0, n) without repeating
/// the edge (numpy 'reflect').
inline index reflect(index i, index n) {
  if (i < 0) return -i;
  if (i >= n) return 2 * (n - 1) - i;
  return i;
}

/// Checks a rank-4 batch and a reflect pad that fits it.
inline void check(const char* op, TensorView<const float> images, index pad) {
  check_rank(op, "images (N x C x H x W)", images.shape(), 4);
  require(pad >= 0, ErrorKind::argument, op, ": pad must be >= 0, got ", pad);
  const index h = images.dim(2), w = images.dim(3);
  require(pad < h && pad < w, ErrorKind::argument, op, ": pad ", pad, " needs images larger than ",
          pad, " x ", pad, " (reflection does not repeat the edge pixel), got ", h, " x ", w);
}

/// True if the storage of `out` overlaps that of `in`.
inline bool overlaps(const float* out, index out_size, const float* in, index in_size) {
  if (out_size == 0 || in_size == 0) return false;
  const std::less<const float*> before;
  return before(out, in + in_size) && before(in, out + out_size);
}

}  // namespace detail::augment

/// Pads each image of the N x C x H x W batch by `pad` pixels on all four
/// sides with numpy's 'reflect' mode, into `out` (resized to N x C x (H+2p) x
/// (W+2p) if its shape differs). Needs 0 <= pad < H and pad < W.
inline void reflect_pad(TensorView<const float> images, index pad, Tensor<float>& out) {
  detail::augment::check("reflect_pad", images, pad);
  const index n = images.dim(0), c = images.dim(1), h = images.dim(2), w = images.dim(3);
  const Shape shape{n, c, h + 2 * pad, w + 2 * pad};
  require(!detail::augment::overlaps(out.data(), out.size(), images.data(), images.size()),
          ErrorKind::argument, "reflect_pad: out must not share storage with the images");
  if (out.shape() != shape) out.resize(shape);
  const index ph = h + 2 * pad, pw = w + 2 * pad;
  std::vector<index> column(static_cast<std::size_t>(pw));
  for (index x = 0; x < pw; ++x) column[std::size_t(x)] = detail::augment::reflect(x - pad, w);
  for (index plane = 0; plane < n * c; ++plane) {
    const float* src = images.data() + plane * h * w;
    float* dst = out.data() + plane * ph * pw;
    for (index y = 0; y < ph; ++y) {
      const float* row = src + detail::augment::reflect(y - pad, h) * w;
      for (index x = 0; x < pw; ++x) dst[y * pw + x] = row[column[std::size_t(x)]];
    }
  }
}

/// reflect_pad into a new tensor.
inline Tensor<float> reflect_pad(TensorView<const float> images, index pad) {
  Tensor<float> out;
  reflect_pad(images, pad, out);
  return out;
}

/// The reference augmentation of an N x C x H x W batch, into `out` (resized
/// to the source's shape if its shape differs; it must not share storage with
/// the source): each image is an H x W window of the image reflect-padded by
/// `pad`, at offsets drawn uniformly from [0, 2*pad], mirrored left-right with
/// probability 1/2 when `flip` is true. See the top of this file for the
/// exact draws. pad = 0 with flip = false copies the batch.
inline void random_crop_flip(TensorView<const float> source, index pad, bool flip, Rng& rng,
                             Tensor<float>& out) {
  detail::augment::check("random_crop_flip", source, pad);
  require(!detail::augment::overlaps(out.data(), out.size(), source.data(), source.size()),
          ErrorKind::argument, "random_crop_flip: out must not share storage with the source");
  if (out.shape() != source.shape()) out.resize(source.shape());
  const index n = source.dim(0), c = source.dim(1), h = source.dim(2), w = source.dim(3);
  const std::uint64_t offsets = std::uint64_t(2 * pad + 1);
  std::vector<index> column(static_cast<std::size_t>(w));
  for (index i = 0; i < n; ++i) {
    const index oy = index(rng.below(offsets));
    const index ox = index(rng.below(offsets));
    const bool mirror = flip && rng.below(2) == 1;
    // Output column x shows padded column x + ox (or W-1-x + ox when
    // mirrored), i.e. source column reflect(that - pad).
    for (index x = 0; x < w; ++x)
      column[std::size_t(x)] = detail::augment::reflect((mirror ? w - 1 - x : x) + ox - pad, w);
    for (index ch = 0; ch < c; ++ch) {
      const float* src = source.data() + (i * c + ch) * h * w;
      float* dst = out.data() + (i * c + ch) * h * w;
      for (index y = 0; y < h; ++y) {
        const float* row = src + detail::augment::reflect(y + oy - pad, h) * w;
        for (index x = 0; x < w; ++x) dst[y * w + x] = row[column[std::size_t(x)]];
      }
    }
  }
}

/// A uniformly random permutation of 0..n-1 (Fisher-Yates with rng.below),
/// the same for the same seed.
inline std::vector<index> shuffled_indices(index n, Rng& rng) {
  require(n >= 0, ErrorKind::argument, "shuffled_indices: n must be >= 0, got ", n);
  std::vector<index> order(static_cast<std::size_t>(n));
  for (index i = 0; i < n; ++i) order[std::size_t(i)] = i;
  for (index i = n - 1; i > 0; --i) {
    const index j = index(rng.below(std::uint64_t(i) + 1));
    std::swap(order[std::size_t(i)], order[std::size_t(j)]);
  }
  return order;
}

/// Copies images order[start], ..., order[start + count - 1] of `data` and
/// their labels into `images` (count x C x H x W, resized only if its shape
/// differs) and `labels` (resized to count). Fails with an argument error if
/// the range leaves `order` or an entry is not an image index of `data`.
inline void gather_batch(const Dataset& data, const std::vector<index>& order, index start,
                         index count, Tensor<float>& images, std::vector<int>& labels) {
  check_rank("gather_batch", "dataset images (N x C x H x W)", data.images.shape(), 4);
  const index n = data.images.dim(0);
  require(index(data.labels.size()) == n, ErrorKind::argument, "gather_batch: the dataset has ", n,
          " images but ", data.labels.size(), " labels");
  const index size = index(order.size());
  require(start >= 0 && count >= 0 && start <= size && count <= size - start, ErrorKind::argument,
          "gather_batch: batch [", start, ", ", start, " + ", count,
          ") is not inside the order of ", size, " indices");
  const Shape shape{count, data.images.dim(1), data.images.dim(2), data.images.dim(3)};
  require(!detail::augment::overlaps(images.data(), images.size(), data.images.data(),
                                     data.images.size()),
          ErrorKind::argument, "gather_batch: images must not share storage with the dataset");
  require(&labels != &data.labels, ErrorKind::argument,
          "gather_batch: labels must not be the dataset's labels");
  for (index k = start; k < start + count; ++k) {  // all checked before anything is written
    const index i = order[std::size_t(k)];
    require(i >= 0 && i < n, ErrorKind::argument, "gather_batch: order[", k, "] = ", i,
            " is not an image index of the dataset (0 to ", n - 1, ")");
  }
  if (images.shape() != shape) images.resize(shape);
  labels.resize(static_cast<std::size_t>(count));
  const index per = shape[1] * shape[2] * shape[3];
  for (index k = 0; k < count; ++k) {
    const index i = order[std::size_t(start + k)];
    const float* src = data.images.data() + i * per;
    std::copy(src, src + per, images.data() + k * per);
    labels[std::size_t(k)] = data.labels[std::size_t(i)];
  }
}

}  // namespace nsl
