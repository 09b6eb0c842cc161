// nsl_mpi_bench — the data-parallel training step of CNN-9 (float, reference
// widths) on MPI, timed: run it alone (one process, --threads T) and under
// mpirun (-np N, --threads T/N) to compare a machine's throughput either
// way; bench/mpi_scaling.sh does both and models the scaling to N machines.
//
//   nsl_mpi_bench [--variant dynamic_dns] [--batch 128] [--steps 20] [--threads 0] [--bucket-mb 25] [--no-sync-bn]
//
// One step: forward on the rank's share of the global batch, loss, backward
// (the gradient buckets start during it), average_gradients, SGD. Prints a
// line and a JSON object (rank 0): the median step time and images per
// second of the whole batch, the median time average_gradients() waited for
// the sums, and the bytes each rank sends into them per step.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "nsl/core/threads.hpp"
#include "nsl/distributed/mpi.hpp"
#include "nsl/models/cnn9.hpp"
#include "nsl/train/loss.hpp"
#include "nsl/train/sgd.hpp"

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

int run(int argc, char** argv) {
  std::string variant = "dynamic_dns";
  nsl::index batch = 128;
  int steps = 20, threads = 0;
  double bucket_mb = 25;
  bool sync_bn = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> const char* {
      nsl::require(i + 1 < argc, nsl::ErrorKind::argument, a, ": expected a value");
      return argv[++i];
    };
    if (a == "--variant") variant = value();
    else if (a == "--batch") batch = std::atol(value());
    else if (a == "--steps") steps = std::atoi(value());
    else if (a == "--threads") threads = std::atoi(value());
    else if (a == "--bucket-mb") bucket_mb = std::atof(value());
    else if (a == "--no-sync-bn") sync_bn = false;
    else nsl::fail(nsl::ErrorKind::argument, nsl::cat("unknown option '", a, "' (see the top of nsl_mpi_bench.cpp)"));
  }
  nsl::require(batch >= 1 && steps >= 1 && bucket_mb > 0, nsl::ErrorKind::argument,
               "expected --batch, --steps and --bucket-mb > 0");
  if (threads > 0) nsl::set_num_threads(threads);

  const bool under_mpi = nsl::mpi::launched();
  const int rank = under_mpi ? nsl::mpi::Communicator().rank() : 0;
  const int ranks = under_mpi ? nsl::mpi::Communicator().size() : 1;
  nsl::require(batch >= ranks, nsl::ErrorKind::argument, "--batch ", batch, " is smaller than the ", ranks, " ranks");
  nsl::Rng rng(1);
  nsl::Sequential<float> net = nsl::cnn9<float>(nsl::parse_variant(variant), 1, 10, rng);
  net.set_borrowing(true);
  nsl::Sgd<float> sgd(net.parameters(), {0.9, 5e-4});
  std::unique_ptr<nsl::mpi::DataParallel<float>> dp;
  if (ranks > 1) {
    nsl::mpi::DataParallelOptions o;
    o.bucket_bytes = std::max<std::size_t>(1, std::size_t(bucket_mb * 1e6));
    o.sync_batch_norm = sync_bn;
    dp = std::make_unique<nsl::mpi::DataParallel<float>>(net, nsl::mpi::Communicator(), o);
  }
  const nsl::index begin = batch * rank / ranks, end = batch * (rank + 1) / ranks;
  nsl::Rng data_rng(2 + std::uint64_t(rank));
  nsl::Tensor<float> images(nsl::Shape{end - begin, 1, 28, 28});
  for (nsl::index k = 0; k < images.size(); ++k) images[k] = float(255.0 * data_rng.uniform());
  std::vector<int> labels(std::size_t(end - begin));
  for (std::size_t k = 0; k < labels.size(); ++k) labels[k] = int(k % 10);
  nsl::Tensor<float> logits(net.output_shape(images.shape())), dlogits(logits.shape());

  const int warmup = 3;
  std::vector<double> step_seconds, wait_seconds;
  for (int step = 0; step < warmup + steps; ++step) {
    if (under_mpi) MPI_Barrier(MPI_COMM_WORLD);
    const auto start = std::chrono::steady_clock::now();
    net.forward_into(images.view(), logits.view());
    nsl::softmax_cross_entropy<float>(logits.view(), labels, 0.01, dlogits.view());
    sgd.zero_gradients();
    net.backward_into(dlogits.view(), {});
    if (dp) dp->average_gradients();
    sgd.step(1e-4);  // small: the weights stay sane over the steps
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (step >= warmup) {
      step_seconds.push_back(seconds);
      wait_seconds.push_back(dp ? dp->last_wait_seconds() : 0.0);
    }
  }
  // Each rank's median; the slowest rank's sets the pace.
  double step = median(step_seconds), wait = median(wait_seconds);
  if (under_mpi) {
    MPI_Allreduce(MPI_IN_PLACE, &step, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, &wait, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  }
  if (rank == 0) {
    const std::size_t bytes = dp ? dp->bytes_per_step() : 0;
    std::printf("nsl_mpi_bench: %s, batch %ld over %d rank(s) x %d thread(s): %.4f s a step, %.1f images/s; "
                "waited %.4f s for the sums of %zu bytes in %zu bucket(s)\n",
                variant.c_str(), long(batch), ranks, nsl::num_threads(), step, double(batch) / step, wait, bytes,
                dp ? dp->buckets() : std::size_t(0));
    std::printf("{\"variant\": \"%s\", \"batch\": %ld, \"ranks\": %d, \"threads\": %d, \"step_seconds\": %.6f, "
                "\"images_per_second\": %.3f, \"wait_seconds\": %.6f, \"bytes_per_step\": %zu, \"sync_bn\": %s}\n",
                variant.c_str(), long(batch), ranks, nsl::num_threads(), step, double(batch) / step, wait, bytes,
                sync_bn ? "true" : "false");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::optional<nsl::mpi::Environment> mpi;
  if (nsl::mpi::launched()) mpi.emplace(argc, argv);
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "nsl_mpi_bench: %s\n", e.what());
    if (mpi) MPI_Abort(MPI_COMM_WORLD, 1);
    return 1;
  }
}
