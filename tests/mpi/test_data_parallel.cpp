// Data-parallel training on MPI (nsl/distributed/mpi.hpp), run by ctest under
// mpirun with 2 and 4 ranks. Every rank runs every test case; a collective
// failure shows on every rank, and main's exit status is the worst rank's.
// In double precision, so that "the same as one process" can be checked to
// 1e-10: the sums differ from one process's only in their order.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "nsl/distributed/mpi.hpp"
#include "nsl/models/cnn9.hpp"
#include "nsl/train/loss.hpp"
#include "nsl/train/sgd.hpp"
#include "test_util.hpp"

using nsl::Shape;
using nsl::Tensor;
using nsl::TensorView;
using nsl::Variant;

namespace {

const nsl::index kBatch = 8, kSize = 8, kClasses = 3;

// A small CNN-9 (8 -> 4 -> 2 -> 1) in double, from `seed`.
nsl::Sequential<double> small_cnn9(Variant v, std::uint64_t seed) {
  nsl::Rng rng(seed);
  nsl::Cnn9Options o;
  o.input_size = kSize;
  o.widths[0] = o.widths[1] = o.widths[2] = 4;
  o.predictor_hidden = 4;
  return nsl::cnn9<double>(v, 1, kClasses, rng, o);
}

// Batch `step` of the run: the same images and labels on every rank.
void make_batch(int step, Tensor<double>& images, std::vector<int>& labels) {
  nsl::Rng rng(9000 + std::uint64_t(step));
  images = nsl::test::randn<double>(Shape{kBatch, 1, kSize, kSize}, rng);
  labels.resize(std::size_t(kBatch));
  for (nsl::index i = 0; i < kBatch; ++i) labels[std::size_t(i)] = int(i % kClasses);
}

// Images [begin, end) of a batch, and their labels.
Tensor<double> rows(const Tensor<double>& images, nsl::index begin, nsl::index end) {
  const nsl::index per = images.size() / images.dim(0);
  Tensor<double> part(Shape{end - begin, images.dim(1), images.dim(2), images.dim(3)});
  std::copy(images.data() + begin * per, images.data() + end * per, part.data());
  return part;
}

// One SGD step (lr 0.1, momentum 0.9, decay 5e-4) of `net` on images with
// the mean cross-entropy; with `dp`, the gradients are averaged over the
// ranks before the update.
double train_step(nsl::Sequential<double>& net, nsl::Sgd<double>& sgd, const Tensor<double>& images,
                  const std::vector<int>& labels, nsl::mpi::DataParallel<double>* dp) {
  Tensor<double> logits(net.output_shape(images.shape())), dlogits(logits.shape());
  net.forward_into(images.view(), logits.view());
  const nsl::LossResult r = nsl::softmax_cross_entropy<double>(logits.view(), labels, 0.0, dlogits.view());
  sgd.zero_gradients();
  net.backward_into(dlogits.view(), {});
  if (dp) dp->average_gradients();
  sgd.step(0.1);
  return r.loss;
}

// Three steps of data-parallel training of `v`: each rank its part of each
// batch. Each rank starts from weights of its own seed; DataParallel makes
// them rank 0's (seed 7).
nsl::Sequential<double> train_data_parallel(Variant v, nsl::mpi::DataParallelOptions options, int steps = 3) {
  const nsl::mpi::Communicator comm;
  nsl::Sequential<double> net = small_cnn9(v, comm.rank() == 0 ? 7 : 100 + std::uint64_t(comm.rank()));
  net.set_training(true);
  nsl::Sgd<double> sgd(net.parameters(), {0.9, 5e-4});
  nsl::mpi::DataParallel<double> dp(net, comm, options);
  const nsl::index part = kBatch / comm.size();
  Tensor<double> images;
  std::vector<int> labels;
  for (int step = 0; step < steps; ++step) {
    make_batch(step, images, labels);
    const nsl::index begin = comm.rank() * part;
    const std::vector<int> mine(labels.begin() + begin, labels.begin() + begin + part);
    train_step(net, sgd, rows(images, begin, begin + part), mine, &dp);
  }
  CHECK(dp.replicas_agree(options.sync_batch_norm));
  return net;
}

// The same three steps in one process with the whole batch.
nsl::Sequential<double> train_alone(Variant v, int steps = 3) {
  nsl::Sequential<double> net = small_cnn9(v, 7);
  net.set_training(true);
  nsl::Sgd<double> sgd(net.parameters(), {0.9, 5e-4});
  Tensor<double> images;
  std::vector<int> labels;
  for (int step = 0; step < steps; ++step) {
    make_batch(step, images, labels);
    train_step(net, sgd, images, labels, nullptr);
  }
  return net;
}

// max |a - b| / max |b| over every parameter (and buffer) of two networks.
double relative_difference(nsl::Sequential<double>& a, nsl::Sequential<double>& b, bool buffers) {
  double diff = 0.0, scale = 0.0;
  auto compare = [&](TensorView<double> x, TensorView<double> y) {
    REQUIRE(x.shape() == y.shape());
    for (nsl::index k = 0; k < x.size(); ++k) {
      diff = std::max(diff, std::abs(x[k] - y[k]));
      scale = std::max(scale, std::abs(y[k]));
    }
  };
  const auto pa = a.parameters(), pb = b.parameters();
  REQUIRE(pa.size() == pb.size());
  for (std::size_t i = 0; i < pa.size(); ++i) compare(pa[i].value, pb[i].value);
  if (buffers) {
    const auto ba = a.buffers(), bb = b.buffers();
    REQUIRE(ba.size() == bb.size());
    for (std::size_t i = 0; i < ba.size(); ++i) compare(ba[i].value, bb[i].value);
  }
  return diff / scale;
}

bool bitwise_equal(nsl::Sequential<double>& a, nsl::Sequential<double>& b) {
  const auto pa = a.parameters(), pb = b.parameters();
  for (std::size_t i = 0; i < pa.size(); ++i)
    if (!(pa[i].value.vec().array() == pb[i].value.vec().array()).all()) return false;
  const auto ba = a.buffers(), bb = b.buffers();
  for (std::size_t i = 0; i < ba.size(); ++i)
    if (!(ba[i].value.vec().array() == bb[i].value.vec().array()).all()) return false;
  return true;
}

}  // namespace

TEST_CASE("data parallel with synchronised BatchNorm: N ranks with batch B/N give one process's batch-B run") {
  const nsl::mpi::Communicator comm;
  REQUIRE(kBatch % comm.size() == 0);
  for (Variant v : {Variant::plain, Variant::static_dns, Variant::dynamic_dns}) {
    CAPTURE(nsl::to_string(v));
    CAPTURE(comm.size());
    nsl::Sequential<double> parallel = train_data_parallel(v, {});
    nsl::Sequential<double> alone = train_alone(v);
    // Parameters and the running statistics, after three steps.
    const double diff = relative_difference(parallel, alone, true);
    CAPTURE(diff);
    CHECK(diff < 1e-10);
    // Three steps move the weights far more than that: the check can fail.
    nsl::Sequential<double> start = small_cnn9(v, 7);
    CHECK(relative_difference(start, alone, false) > 1e-3);
  }
}

TEST_CASE("data parallel: the same ranks and seed give the same result, bit for bit, with any bucket size") {
  const nsl::mpi::Communicator comm;
  nsl::mpi::DataParallelOptions small_buckets;
  small_buckets.bucket_bytes = 1;  // a bucket per layer: many sums in flight during backward
  nsl::Sequential<double> first = train_data_parallel(Variant::dynamic_dns, small_buckets);
  nsl::Sequential<double> second = train_data_parallel(Variant::dynamic_dns, small_buckets);
  CHECK(bitwise_equal(first, second));
  nsl::Sequential<double> one_bucket = train_data_parallel(Variant::dynamic_dns, {});
  CHECK(relative_difference(one_bucket, first, true) < 1e-12);
}

TEST_CASE("data parallel: the buckets hold whole layers, in backward's order, and count the bytes sent") {
  nsl::Sequential<double> net = small_cnn9(Variant::plain, 7);
  std::size_t values = 0;
  for (const auto& p : net.parameters()) values += std::size_t(p.value.size());
  {
    nsl::mpi::DataParallel<double> one(net, nsl::mpi::Communicator(), {});
    CHECK(one.buckets() == 1);
    CHECK(one.bytes_per_step() == values * sizeof(double));
  }
  std::size_t with_parameters = 0;
  for (std::size_t i = 0; i < net.size(); ++i) with_parameters += net.layer(i).parameters().empty() ? 0 : 1;
  nsl::mpi::DataParallelOptions small_buckets;
  small_buckets.bucket_bytes = 1;
  nsl::mpi::DataParallel<double> many(net, nsl::mpi::Communicator(), small_buckets);
  CHECK(many.buckets() == with_parameters);
  CHECK(many.bytes_per_step() == values * sizeof(double));
}

TEST_CASE("data parallel: per-rank BatchNorm is another computation, and the ranks' parameters still agree") {
  const nsl::mpi::Communicator comm;
  if (comm.size() == 1) return;
  nsl::mpi::DataParallelOptions per_rank;
  per_rank.sync_batch_norm = false;
  nsl::Sequential<double> parallel = train_data_parallel(Variant::plain, per_rank);  // checks the parameters agree
  nsl::Sequential<double> alone = train_alone(Variant::plain);
  CHECK(relative_difference(parallel, alone, false) > 1e-6);
}

TEST_CASE("data parallel: a second backward before average_gradients is an error, and the run goes on after it") {
  const nsl::mpi::Communicator comm;
  nsl::Sequential<double> net = small_cnn9(Variant::plain, 7);
  nsl::mpi::DataParallel<double> dp(net, comm, {});
  Tensor<double> images;
  std::vector<int> labels;
  make_batch(0, images, labels);
  Tensor<double> logits(net.output_shape(images.shape())), dlogits(logits.shape());
  net.forward_into(images.view(), logits.view());
  nsl::softmax_cross_entropy<double>(logits.view(), labels, 0.0, dlogits.view());
  net.backward_into(dlogits.view(), {});
  CHECK_THROWS_WITH_AS(net.backward_into(dlogits.view(), {}), doctest::Contains("second backward"), nsl::Error);
  dp.average_gradients();
  net.backward_into(dlogits.view(), {});
  dp.average_gradients();
  CHECK(dp.replicas_agree());
}

// Synchronised BatchNorm's backward against central differences of the
// loss summed over the ranks, L = sum_r <y_r, dy_r>: each rank's input
// gradient, and the sums over the ranks of the gamma and beta gradients.
TEST_CASE("synchronised BatchNorm2d passes gradcheck across the ranks") {
  const nsl::mpi::Communicator comm;
  nsl::mpi::MpiReplicaSum replicas(comm);
  for (bool borrowing : {false, true}) {
    CAPTURE(borrowing);
    nsl::Rng rng(40 + std::uint64_t(comm.rank()));
    nsl::BatchNorm2d<double> bn(3);
    bn.set_replica_sum(&replicas);
    bn.set_borrowing(borrowing);
    Tensor<double> x = nsl::test::randn<double>(Shape{2, 3, 2, 3}, rng);
    const Tensor<double> dy = nsl::test::randn<double>(x.shape(), rng);
    for (nsl::index c = 0; c < 3; ++c) {
      bn.gamma()[c] = 0.5 + 0.3 * double(c);
      bn.beta()[c] = 0.1 * double(c);
    }
    auto loss = [&]() {  // the loss over every rank (a collective)
      Tensor<double> y = bn.forward(x.view());
      double l = (y.vec().array() * dy.vec().array()).sum();
      comm.sum(&l, 1);
      return l;
    };
    loss();
    Tensor<double> dgamma(Shape{3}), dbeta(Shape{3});
    for (const auto& p : bn.parameters()) nsl::set_zero<double>(p.grad);
    const Tensor<double> dx = bn.backward(dy.view());
    dgamma.vec() = bn.parameters()[0].grad.vec();
    dbeta.vec() = bn.parameters()[1].grad.vec();
    comm.sum(dgamma.data(), 3);
    comm.sum(dbeta.data(), 3);
    const double h = 1e-6;
    double worst = 0.0;
    for (int owner = 0; owner < comm.size(); ++owner)
      for (nsl::index k = 0; k < x.size(); ++k) {
        const double saved = x[k];
        if (comm.rank() == owner) x[k] = saved + h;
        const double up = loss();
        if (comm.rank() == owner) x[k] = saved - h;
        const double down = loss();
        if (comm.rank() == owner) {
          x[k] = saved;
          worst = std::max(worst, std::abs((up - down) / (2 * h) - dx[k]));
        }
      }
    for (int which = 0; which < 2; ++which)
      for (nsl::index c = 0; c < 3; ++c) {
        double& value = which == 0 ? bn.gamma()[c] : bn.beta()[c];
        const double saved = value;
        value = saved + h;
        const double up = loss();
        value = saved - h;
        const double down = loss();
        value = saved;
        worst = std::max(worst, std::abs((up - down) / (2 * h) - (which == 0 ? dgamma[c] : dbeta[c])));
      }
    CAPTURE(worst);
    CHECK(worst < 1e-7);
  }
}

int main(int argc, char** argv) {
  nsl::mpi::Environment mpi(argc, argv);
  doctest::Context context(argc, argv);
  int status = context.run();
  int worst = status;
  MPI_Allreduce(&status, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  return worst;
}
