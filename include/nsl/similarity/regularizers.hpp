// nsl/similarity/regularizers.hpp — penalties on the similarity M, and the
// learned kernel shape they produce.
//
// "Learning the kernel shape" (NSL.md §1) means regularising M:
//
//   l2_penalty            R = λ/2 ||M||²       dR/dM = λ M       (towards zero;
//                         the reference recipe puts λ = 5e-3 on static UNS)
//   l2_identity_penalty   R = λ/2 ||M - I||²   dR/dM = λ (M - I)  (towards the
//                         plain convolution)
//   l1_penalty            R = λ ||m||_1, for the DNS diagonal; not
//                         differentiable at 0, so it is minimised with a
//                         proximal step after each gradient step:
//   soft_threshold        m <- sign(m) max(|m| - η λ, 0)   (η the learning rate)
//
// The proximal step is the exact minimiser of λ|m| + (m - m̂)²/(2η), so a
// slot whose gradient cannot hold it away from zero lands exactly on 0 —
// the slot is switched off, and the kernel takes a non-square shape.
//
// Penalties return R and ADD their gradient into dm (the layer's gradient
// buffer), so they combine with backward's accumulated gradients.
#pragma once

#include <cmath>

#include "nsl/similarity/bilinear.hpp"

namespace nsl {

/// R = λ/2 ||M||²; dm += λ M.
template <class T>
T l2_penalty(TensorView<const T> m, T lambda, TensorView<T> dm) {
  check_shape("l2_penalty", "gradient", dm.shape(), m.shape());
  dm.vec() += lambda * m.vec();
  return T(0.5) * lambda * m.vec().squaredNorm();
}

/// R = λ/2 ||M - I||² in the structure's stored form; dm += λ (M - I).
template <class T>
T l2_identity_penalty(Structure s, TensorView<const T> m, index channels, index slots, T lambda,
                      TensorView<T> dm) {
  check_similarity("l2_identity_penalty", s, m.shape(), channels, slots);
  check_shape("l2_identity_penalty", "gradient", dm.shape(), m.shape());
  const Tensor<T> identity = identity_similarity<T>(s, channels, slots);
  const Vector<T> difference = m.vec() - identity.vec();
  dm.vec() += lambda * difference;
  return T(0.5) * lambda * difference.squaredNorm();
}

/// R = λ ||m||_1 (the value only: minimise it with soft_threshold).
template <class T>
T l1_penalty(TensorView<const T> m, T lambda) {
  return lambda * m.vec().template lpNorm<1>();
}

/// The proximal step of λ||m||_1 with step size η: m <- sign(m) max(|m| - ηλ, 0).
template <class T>
void soft_threshold(TensorView<T> m, T threshold) {
  require(threshold >= T(0), ErrorKind::argument, "soft_threshold: threshold must be >= 0, got ", threshold);
  for (index i = 0; i < m.size(); ++i) {
    const T shrunk = std::abs(m[i]) - threshold;
    m[i] = shrunk > T(0) ? std::copysign(shrunk, m[i]) : T(0);
  }
}

/// The learned kernel shape: for each weight slot a of the k x k kernel, how
/// strongly it reads the input, sqrt(mean_i ||row (i, a) of M||²) over the
/// channels i. For DNS that is |m_a|; for UNS the norm of row a of M; for
/// the identity all ones. Returned as K values in slot order (r = di*k + dj).
template <class T>
Vector<T> kernel_shape(Structure s, TensorView<const T> m, index channels, index slots) {
  Vector<T> shape(slots);
  switch (s) {
    case Structure::identity: shape.setOnes(); break;
    case Structure::diagonal: shape = m.vec().cwiseAbs(); break;
    case Structure::channel_shared: shape = m.matrix(slots, slots).rowwise().norm(); break;
    case Structure::block_diagonal:
    case Structure::full: {
      const Matrix<T> full = expand_similarity(s, m, channels, slots);
      for (index a = 0; a < slots; ++a) {
        T sum = 0;
        for (index i = 0; i < channels; ++i) sum += full.row(i * slots + a).squaredNorm();
        shape[a] = std::sqrt(sum / T(channels));
      }
      break;
    }
  }
  return shape;
}

}  // namespace nsl
