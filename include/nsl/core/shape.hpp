// nsl/core/shape.hpp — the shape of a tensor: 1 to 4 extents, C order.
//
// Image batches are N x C x H x W; convolution weights are
// C_out x C_in x k x k; a Linear layer's activations are N x F; a bias is (F).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <ostream>
#include <string>

#include "nsl/core/error.hpp"

namespace nsl {

/// Signed size type used for every extent and offset (same as Eigen::Index).
using index = std::ptrdiff_t;

/// True if the `rank` extents at `extents` (none negative) fit an nsl tensor:
/// their product, empty extents counted as 1, times 8 bytes (the widest
/// element) fits in `index`. Shape refuses any other extents; readers check
/// this first, to fail with their own format error.
template <class Int>
bool extents_addressable(const Int* extents, int rank) {
  const std::uint64_t limit = std::uint64_t(std::numeric_limits<index>::max()) / 8;
  std::uint64_t n = 1;
  for (int i = 0; i < rank; ++i) {
    const std::uint64_t e = extents[i] > 0 ? std::uint64_t(extents[i]) : 1;
    if (e > limit / n) return false;
    n *= e;
  }
  return true;
}

class Shape {
 public:
  static constexpr int max_rank = 4;

  Shape() = default;
  Shape(std::initializer_list<index> extents) {
    require(extents.size() >= 1 && extents.size() <= max_rank, ErrorKind::shape,
            "Shape: rank must be 1 to ", max_rank, ", got ", extents.size());
    for (index e : extents) {
      require(e >= 0, ErrorKind::shape, "Shape: negative extent ", e);
      dims_[static_cast<std::size_t>(rank_++)] = e;
    }
    check_size();
  }
  /// Builds a shape from `rank` extents in `extents`.
  static Shape from(const index* extents, int rank) {
    require(rank >= 1 && rank <= max_rank, ErrorKind::shape,
            "Shape: rank must be 1 to ", max_rank, ", got ", rank);
    Shape s;
    for (int i = 0; i < rank; ++i) {
      require(extents[i] >= 0, ErrorKind::shape, "Shape: negative extent ", extents[i]);
      s.dims_[static_cast<std::size_t>(i)] = extents[i];
    }
    s.rank_ = rank;
    s.check_size();
    return s;
  }

  int rank() const { return rank_; }
  index operator[](int axis) const { return dims_[static_cast<std::size_t>(axis)]; }
  /// Number of elements; 0 for the default shape of rank 0 (no tensor).
  index size() const {
    if (rank_ == 0) return 0;
    index n = 1;
    for (int i = 0; i < rank_; ++i) n *= dims_[static_cast<std::size_t>(i)];
    return n;
  }

  friend bool operator==(const Shape& a, const Shape& b) {
    if (a.rank_ != b.rank_) return false;
    for (int i = 0; i < a.rank_; ++i)
      if (a[i] != b[i]) return false;
    return true;
  }
  friend bool operator!=(const Shape& a, const Shape& b) { return !(a == b); }

  /// "[2, 3, 28, 28]"
  std::string str() const {
    std::string s = "[";
    for (int i = 0; i < rank_; ++i) {
      if (i) s += ", ";
      s += std::to_string(dims_[static_cast<std::size_t>(i)]);
    }
    return s + "]";
  }
  friend std::ostream& operator<<(std::ostream& out, const Shape& s) { return out << s.str(); }

 private:
  void check_size() const {
    // Guard the element count against overflow so that a corrupt file or a
    // typo cannot ask for an absurd allocation. Empty extents count as 1, so
    // that (0, 2^62) is refused too: code that multiplies some of a shape's
    // extents (rows times columns, say) never overflows, empty shape or not.
    if (!extents_addressable(dims_.data(), rank_))
      fail(ErrorKind::shape, cat("Shape: extents ", str(), " overflow the addressable size"));
  }

  std::array<index, max_rank> dims_{};
  int rank_ = 0;
};

/// Fails with a shape error naming `op` and `what` unless `actual == expected`.
inline void check_shape(const char* op, const char* what, const Shape& actual,
                        const Shape& expected) {
  require(actual == expected, ErrorKind::shape, op, ": ", what, ": expected ", expected, ", got ", actual);
}

/// Fails unless `s` has rank `rank`.
inline void check_rank(const char* op, const char* what, const Shape& s, int rank) {
  require(s.rank() == rank, ErrorKind::shape, op, ": ", what, ": expected rank ", rank, ", got ", s);
}

}  // namespace nsl
