// nsl/ops/im2col.hpp — patches of one image as the columns of a matrix.
//
// For one image x (C x H x W), a square k x k kernel, stride s and zero
// padding p, `im2col` writes the matrix X with C*K rows (K = k*k) and
// Ho*Wo columns:
//
//     X[(c, r), (oh, ow)] = x[c, oh*s - p + di, ow*s - p + dj]     (0 outside)
//
// where r = di*k + dj is the kernel slot in row-major order (NSL.md §1) and
// the column index is oh*Wo + ow. A convolution is then one GEMM, W X, with W
// the C_out x (C*K) weight matrix. `col2im` is the adjoint: it scatters-adds
// a C*K x Ho*Wo matrix back onto the C x H x W image, which is how the
// gradient of a patch matrix reaches the input.
#pragma once

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "nsl/core/gemm.hpp"
#include "nsl/core/simd.hpp"
#include "nsl/core/tensor.hpp"

namespace nsl {

/// Kernel size, stride and zero padding of a square convolution window.
struct ConvGeometry {
  index kernel = 3;
  index stride = 1;
  index padding = 0;

  /// Output extent for an input extent (floor division, as PyTorch).
  index output_extent(index input_extent) const {
    return (input_extent + 2 * padding - kernel) / stride + 1;
  }
  /// Number of kernel slots K = k*k.
  index slots() const { return kernel * kernel; }
};

/// Fails unless the geometry is valid and gives a non-empty output on H x W.
inline void check_geometry(const char* op, const ConvGeometry& g, index height, index width) {
  require(g.kernel >= 1, ErrorKind::argument, op, ": kernel size must be >= 1, got ", g.kernel);
  require(g.stride >= 1, ErrorKind::argument, op, ": stride must be >= 1, got ", g.stride);
  require(g.padding >= 0, ErrorKind::argument, op, ": padding must be >= 0, got ", g.padding);
  require(height + 2 * g.padding >= g.kernel && width + 2 * g.padding >= g.kernel,
          ErrorKind::shape, op, ": a ", g.kernel, "x", g.kernel, " kernel with padding ",
          g.padding, " does not fit a ", height, "x", width, " input");
}

namespace detail {
// Integer division rounding towards -infinity / +infinity (b > 0).
inline index floor_div(index a, index b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
inline index ceil_div(index a, index b) { return -floor_div(-a, b); }
}  // namespace detail

/// Writes the (C*K) x (Ho*Wo) patch matrix of one C x H x W image into `columns`
/// (row-major, resized by the caller to exactly that size).
template <class T>
void im2col(const T* image, index channels, index height, index width, const ConvGeometry& g,
            T* columns) {
  const index k = g.kernel, s = g.stride, p = g.padding;
  const index out_h = g.output_extent(height), out_w = g.output_extent(width);
  const index pixels = out_h * out_w;
  using detail::ceil_div;
  using detail::floor_div;
  if (s == 1 && out_w == width) {
    // Stride 1 with a width-preserving padding: output pixel (oh, ow) of slot
    // (di, dj) reads input element (oh + di - p) * W + ow + dj - p, a constant
    // offset from its own index, so the rows of valid input form one
    // contiguous copy; then the entries that wrapped into a neighbouring input
    // row (ow outside [ow_begin, ow_end)) and the rows outside the image are zeroed.
    for (index c = 0; c < channels; ++c) {
      const T* plane = image + c * height * width;
      for (index di = 0; di < k; ++di) {
        const index oh_begin = std::clamp<index>(p - di, 0, out_h);
        const index oh_end = std::clamp<index>(height + p - di, oh_begin, out_h);
        for (index dj = 0; dj < k; ++dj) {
          T* row = columns + (c * k * k + di * k + dj) * pixels;
          const index ow_begin = std::clamp<index>(p - dj, 0, out_w);
          const index ow_end = std::clamp<index>(width + p - dj, ow_begin, out_w);
          const index offset = (di - p) * width + (dj - p);
          if (oh_begin < oh_end && ow_begin < ow_end) {
            const index first = oh_begin * out_w + ow_begin, last = (oh_end - 1) * out_w + ow_end;
            std::copy(plane + first + offset, plane + last + offset, row + first);
            for (index oh = oh_begin; oh < oh_end; ++oh) {
              T* out = row + oh * out_w;
              for (index ow = 0; ow < ow_begin; ++ow) out[ow] = T(0);
              for (index ow = ow_end; ow < out_w; ++ow) out[ow] = T(0);
            }
            std::fill(row, row + oh_begin * out_w, T(0));
            std::fill(row + oh_end * out_w, row + pixels, T(0));
          } else {
            std::fill(row, row + pixels, T(0));
          }
        }
      }
    }
    return;
  }
  for (index c = 0; c < channels; ++c) {
    const T* plane = image + c * height * width;
    for (index di = 0; di < k; ++di) {
      for (index dj = 0; dj < k; ++dj) {
        T* row = columns + (c * k * k + di * k + dj) * pixels;
        // Output columns [ow_begin, ow_end) read input columns inside [0, W).
        const index ow_begin = std::clamp<index>(ceil_div(p - dj, s), 0, out_w);
        const index ow_end = std::clamp<index>(floor_div(width - 1 + p - dj, s) + 1, ow_begin, out_w);
        for (index oh = 0; oh < out_h; ++oh) {
          T* out = row + oh * out_w;
          const index ih = oh * s - p + di;
          if (ih < 0 || ih >= height) {
            std::fill(out, out + out_w, T(0));
            continue;
          }
          const T* in = plane + ih * width;
          const index shift = dj - p;  // input column = ow*s + shift
          std::fill(out, out + ow_begin, T(0));
          if (s == 1) {
            std::copy(in + ow_begin + shift, in + ow_end + shift, out + ow_begin);
          } else {
            for (index ow = ow_begin; ow < ow_end; ++ow) out[ow] = in[ow * s + shift];
          }
          std::fill(out + ow_end, out + out_w, T(0));
        }
      }
    }
  }
}

/// Adjoint of im2col: image[c, ih, iw] += sum of the column entries that
/// im2col would have read from (c, ih, iw). The caller zeroes `image` first
/// when it wants an assignment.
template <class T>
void col2im_add(const T* columns, index channels, index height, index width,
                const ConvGeometry& g, T* image) {
  const index k = g.kernel, s = g.stride, p = g.padding;
  const index out_h = g.output_extent(height), out_w = g.output_extent(width);
  const index pixels = out_h * out_w;
  using detail::ceil_div;
  using detail::floor_div;
  for (index c = 0; c < channels; ++c) {
    T* plane = image + c * height * width;
    for (index di = 0; di < k; ++di) {
      for (index dj = 0; dj < k; ++dj) {
        const T* row = columns + (c * k * k + di * k + dj) * pixels;
        const index ow_begin = std::clamp<index>(ceil_div(p - dj, s), 0, out_w);
        const index ow_end = std::clamp<index>(floor_div(width - 1 + p - dj, s) + 1, ow_begin, out_w);
        for (index oh = 0; oh < out_h; ++oh) {
          const index ih = oh * s - p + di;
          if (ih < 0 || ih >= height) continue;
          const T* in = row + oh * out_w;
          T* out = plane + ih * width;
          const index shift = dj - p;
          if (s == 1) {
            for (index ow = ow_begin; ow < ow_end; ++ow) out[ow + shift] += in[ow];  // contiguous: vectorised
          } else {
            for (index ow = ow_begin; ow < ow_end; ++ow) out[ow * s + shift] += in[ow];
          }
        }
      }
    }
  }
}

/// image = col2im(columns) (assigned, not added), using `columns` as scratch:
/// for stride 1 with a width-kept padding (2p = k - 1) the entries that
/// im2col would have set to zero are overwritten with 0, so that each slot's
/// row adds to the image in one contiguous sweep (the same offset trick as
/// im2col), starting from the centre slot, which covers every pixel.
/// Other geometries zero the image and call col2im_add. The sum is the same
/// as col2im_add's up to the order of the additions.
template <class T>
void col2im_scratch(T* columns, index channels, index height, index width, const ConvGeometry& g, T* image) {
  const index k = g.kernel, p = g.padding;
  const index out_h = g.output_extent(height), out_w = g.output_extent(width);
  if (g.stride != 1 || out_w != width || out_h != height) {
    std::fill(image, image + channels * height * width, T(0));
    col2im_add(columns, channels, height, width, g, image);
    return;
  }
  const index pixels = out_h * out_w, centre = p * k + p;
  for (index c = 0; c < channels; ++c) {
    T* plane = image + c * height * width;
    T* slots = columns + c * k * k * pixels;
    std::copy(slots + centre * pixels, slots + (centre + 1) * pixels, plane);
    for (index di = 0; di < k; ++di) {
      const index oh_begin = std::clamp<index>(p - di, 0, out_h);
      const index oh_end = std::clamp<index>(height + p - di, oh_begin, out_h);
      for (index dj = 0; dj < k; ++dj) {
        if (di * k + dj == centre) continue;
        T* row = slots + (di * k + dj) * pixels;
        const index ow_begin = std::clamp<index>(p - dj, 0, out_w);
        const index ow_end = std::clamp<index>(width + p - dj, ow_begin, out_w);
        if (oh_begin >= oh_end || ow_begin >= ow_end) continue;
        for (index oh = oh_begin; oh < oh_end; ++oh) {
          T* in = row + oh * out_w;
          for (index ow = 0; ow < ow_begin; ++ow) in[ow] = T(0);
          for (index ow = ow_end; ow < out_w; ++ow) in[ow] = T(0);
        }
        const index first = oh_begin * out_w + ow_begin, last = (oh_end - 1) * out_w + ow_end;
        T* out = plane + (di - p) * width + (dj - p);
        for (index e = first; e < last; ++e) out[e] += row[e];
      }
    }
  }
}

/// Values of an image zero-padded by p on every side, C (H + 2p) (W + 2p);
/// 0 without padding (pad_image then returns the image itself).
inline index padded_image_size(index channels, index height, index width, index p) {
  return p == 0 ? 0 : channels * (height + 2 * p) * (width + 2 * p);
}

namespace detail {
// dst[0, n) = src[0, n) for the short runs of padding (a row of a small
// map): whole registers, the last one overlapping the one before, instead
// of a libc call per run (memmove's fixed cost is that of the copy itself
// for 7 to 56 values).
template <class T>
inline void copy_run(const T* src, index n, T* dst) {
#if defined(NSL_HAVE_XSIMD) && NSL_HAVE_XSIMD
  using Register = xsimd::batch<T>;
  constexpr index L = static_cast<index>(Register::size);
  if (n >= L) {
    for (index j = 0; j + L < n; j += L) Register::load_unaligned(src + j).store_unaligned(dst + j);
    Register::load_unaligned(src + n - L).store_unaligned(dst + n - L);
    return;
  }
#endif
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {  // shorter than a register: one masked load and store
    if (n < 16) {
      const __mmask16 mask = simd_first_lanes16(n);
      _mm512_mask_storeu_ps(dst, mask, _mm512_maskz_loadu_ps(mask, src));
      return;
    }
  } else if constexpr (std::is_same_v<T, double>) {
    if (n < 8) {
      const __mmask8 mask = simd_first_lanes8(n);
      _mm512_mask_storeu_pd(dst, mask, _mm512_maskz_loadu_pd(mask, src));
      return;
    }
  }
#endif
  for (index j = 0; j < n; ++j) dst[j] = src[j];
}
}  // namespace detail

/// The C x H x W image zero-padded by p on every side, plane after plane
/// (padded_image_size values): written into `out` (each value once) and
/// returned; without padding, the image itself.
template <class T>
const T* pad_image(const T* image, index channels, index height, index width, index p, T* out) {
  if (p == 0) return image;
  const index Wp = width + 2 * p;
  for (index c = 0; c < channels; ++c) {
    T* plane = out + c * (height + 2 * p) * Wp;
    std::fill(plane, plane + p * Wp + p, T(0));  // the top rows and the first row's left border
    for (index h = 0; h < height; ++h) {
      T* row = plane + (h + p) * Wp;
      detail::copy_run(image + (c * height + h) * width, width, row + p);
      std::fill(row + p + width, row + Wp + p, T(0));  // its right border, the next row's left border
    }
    std::fill(plane + (height + p) * Wp + p, plane + (height + 2 * p) * Wp, T(0));
  }
  return out;
}

/// pad_image's result kept between calls for images of one shape: the
/// zero borders are written only when the shape changes (the buffer is
/// zeroed whole then), so each image after the first costs the copy of its
/// interior rows. Only grows.
template <class T>
struct PaddedImageBuffer {
  Vector<T> values;
  index channels = -1, height = -1, width = -1, padding = -1;

  /// Makes `values` a zero-bordered C x (H + 2p) x (W + 2p) image (p > 0).
  void prepare(index C, index H, index W, index p) {
    if (C == channels && H == height && W == width && p == padding) return;
    const index size = padded_image_size(C, H, W, p);
    if (values.size() < size) values.resize(size);
    values.head(size).setZero();
    channels = C, height = H, width = W, padding = p;
  }
  /// Planes [first, last) of `image` into the interior (after prepare).
  void copy_planes(const T* image, index first, index last) {
    const index Wp = width + 2 * padding, Hp = height + 2 * padding;
    for (index c = first; c < last; ++c)
      for (index h = 0; h < height; ++h)
        detail::copy_run(image + (c * height + h) * width, width, values.data() + (c * Hp + h + padding) * Wp + padding);
  }
};

/// Writes blocks of the patch matrix X = im2col(image) ((C K) x P), or of its
/// transpose, in the panel layout of gemm_with_rhs (nsl/core/gemm.hpp)
/// without forming X: a convolution's GEMM packs its patches straight from
/// the image, which stays in cache, instead of writing X and reading it back.
template <class T>
struct PatchPacker {
  const T* image;
  index channels, height, width;
  ConvGeometry geometry;
  bool transposed;  ///< false: op(B) = X (depth = patch row); true: op(B) = X^T (depth = pixel)
  /// Optional (K x pixels): pack V = (1 + gain_r(p)) X_{(c, r)}(p) instead of X,
  /// the diagonal patch transform of dynamic NSL (nsl/ops/patch_transform.hpp).
  const T* slot_gain = nullptr;
  /// The image zero-padded by the geometry's padding on every side
  /// (pad_image; without padding, the image itself, and null is read as
  /// `image`). Every patch row is read straight from the padded planes, one
  /// output row's run of pixels at a time, with no bounds to test and no
  /// zeros to write.
  const T* padded = nullptr;

  /// op(B)'s depths [k0, k0 + depth) x columns [j0, j0 + cols) into nr-wide panels.
  void operator()(index k0, index j0, index depth, index cols, index nr, T* packed) const {
    require(padded || geometry.padding == 0, ErrorKind::argument,
            "PatchPacker: a padding of ", geometry.padding, " needs the padded image (pad_image)");
    pack_padded(padded ? padded : image, k0, j0, depth, cols, nr, packed);
    if (const index used = cols % nr; used != 0) {  // zero the last panel's columns past cols
      T* last = packed + (cols / nr) * nr * depth;
      for (index k = 0; k < depth; ++k) std::fill(last + k * nr + used, last + (k + 1) * nr, T(0));
    }
  }

  /// operator() from the padded image: for each patch row (c, slot) the
  /// pixels [first, first + count) in runs inside one output row, whose
  /// inputs are padded[c, oh s + di, (ow + q) s + dj] for q < run, each
  /// times 1 + gain (patch_transform's fused multiply-add) when a gain is given.
  void pack_padded(const T* padded_image, index k0, index j0, index depth, index cols, index nr, T* packed) const {
    const index k = geometry.kernel, s = geometry.stride, slots = geometry.slots();
    const index Wp = width + 2 * geometry.padding, plane = (height + 2 * geometry.padding) * Wp;
    const index out_w = geometry.output_extent(width), pixels = geometry.output_extent(height) * out_w;
    // to[q * step] = X[(c, slot), pixel + q] (times the gain) for q < count, the pixels in one output row.
    const auto run = [&](const T* from, const T* gain, index count, T* to, index step) {
      if (s == 1 && step == 1) {
        if (gain) {
          for (index q = 0; q < count; ++q) to[q] = std::fma(gain[q], from[q], from[q]);
        } else {
          for (index q = 0; q < count; ++q) to[q] = from[q];
        }
      } else {
        for (index q = 0; q < count; ++q) {
          const T v = from[q * s];
          to[q * step] = gain ? std::fma(gain[q], v, v) : v;
        }
      }
    };
    // Patch row `row`: its padded source (pixel (oh, ow) reads source[oh s Wp + ow s]) and its gains.
    const auto source_of = [&](index row) {
      const index slot = row % slots;
      return padded_image + (row / slots) * plane + (slot / k) * Wp + slot % k;
    };
    const auto gain_of = [&](index row) { return slot_gain ? slot_gain + (row % slots) * pixels : nullptr; };
    const index first_oh = (transposed ? k0 : j0) / out_w, first_ow = (transposed ? k0 : j0) % out_w;
    if (!transposed) {  // row kk of the block: patch row k0 + kk, pixels j0 ...; runs split at output rows and panels
      for (index kk = 0; kk < depth; ++kk) {
        const T* source = source_of(k0 + kk);
        const T* gain = gain_of(k0 + kk);
        index oh = first_oh, ow = first_ow, panel = 0, lane = 0;
        for (index j = 0; j < cols;) {
          const index count = std::min({out_w - ow, nr - lane, cols - j});
          run(source + oh * s * Wp + ow * s, gain ? gain + j0 + j : nullptr, count,
              packed + panel * nr * depth + kk * nr + lane, 1);
          j += count, ow += count, lane += count;
          if (ow == out_w) ow = 0, ++oh;
          if (lane == nr) lane = 0, ++panel;
        }
      }
    } else {  // column j of the block: patch row j0 + j, pixels k0 ...; runs split at output rows
      index j = 0;
      // Whole panels of the GEMM's width: a few pixels of the panel's nr
      // patch rows side by side in a small block (contiguous runs), then
      // transposed into the panel with contiguous stores.
      constexpr index wide = gemm_panel_width<T>();
      if constexpr (wide > 0)  // (0 without xsimd)
        if (nr == wide)
          for (; j + wide <= cols; j += wide) {
            constexpr index block = 32;  // pixels per step
            alignas(64) T rows[wide][block];
            const T* source[wide];
            const T* gain[wide];
            for (index jj = 0; jj < wide; ++jj) source[jj] = source_of(j0 + j + jj), gain[jj] = gain_of(j0 + j + jj);
            T* to = packed + (j / nr) * nr * depth;
            index oh = first_oh, ow = first_ow;
            for (index q = 0; q < depth;) {
              const index count = std::min({out_w - ow, depth - q, block}), at = oh * s * Wp + ow * s;
              for (index jj = 0; jj < wide; ++jj)
                run(source[jj] + at, gain[jj] ? gain[jj] + k0 + q : nullptr, count, rows[jj], 1);
              for (index i = 0; i < count; ++i)
#pragma GCC unroll 32
                for (index jj = 0; jj < wide; ++jj) to[(q + i) * wide + jj] = rows[jj][i];
              q += count, ow += count;
              if (ow == out_w) ow = 0, ++oh;
            }
          }
      for (; j < cols; ++j) {
        const T* source = source_of(j0 + j);
        const T* gain = gain_of(j0 + j);
        T* to = packed + (j / nr) * nr * depth + j % nr;
        index oh = first_oh, ow = first_ow;
        for (index q = 0; q < depth;) {
          const index count = std::min(out_w - ow, depth - q);
          run(source + oh * s * Wp + ow * s, gain ? gain + k0 + q : nullptr, count, to + q * nr, nr);
          q += count, ow = 0, ++oh;
        }
      }
    }
  }
};

/// Reference im2col written as the formula reads; tests compare it with im2col.
template <class T>
void im2col_reference(const T* image, index channels, index height, index width,
                      const ConvGeometry& g, T* columns) {
  const index k = g.kernel;
  const index out_h = g.output_extent(height), out_w = g.output_extent(width);
  for (index c = 0; c < channels; ++c)
    for (index di = 0; di < k; ++di)
      for (index dj = 0; dj < k; ++dj)
        for (index oh = 0; oh < out_h; ++oh)
          for (index ow = 0; ow < out_w; ++ow) {
            const index ih = oh * g.stride - g.padding + di;
            const index iw = ow * g.stride - g.padding + dj;
            const bool inside = ih >= 0 && ih < height && iw >= 0 && iw < width;
            columns[(c * k * k + di * k + dj) * out_h * out_w + oh * out_w + ow] =
                inside ? image[(c * height + ih) * width + iw] : T(0);
          }
}

}  // namespace nsl
