// nsl/nsl.hpp — the whole CPU library in one include:
//
//     #include <nsl/nsl.hpp>
//
// The headers form floors; a header includes only floors below its own, and
// this one sits on top of them all:
//
//     deploy/                           a trained network's inference form (the folds)
//     io/                               checkpoints, model files, .npy, atomic writes
//     models/  train/  check/  fewshot/ Sequential, CNN-9, Conv-4; loss, SGD,
//                                       schedules, precise BN, evaluation;
//                                       gradcheck; few-shot episodes and heads
//     layers/                           one class per file: Conv2d, StaticNSConv2d,
//                                       SimilarityPredictor, DynamicNSConv2d,
//                                       SphereConv2d, GlobalSimilarity2d, BatchNorm2d, ...
//     ops/                              stateless math on tensors (im2col, conv,
//                                       patch transform, attention, BN, pool, ...)
//     similarity/  data/                w^T M x for every structure of M; dataset readers
//     core/                             tensors, shapes, errors, device tags, threads,
//                                       RNG, GEMM, little-endian bytes and CRC-32
//
// Left out:
//   nsl/cuda/*.cuh             the CUDA backend, for nvcc translation units
//                              only: include nsl/cuda/cuda.cuh there.
//   nsl/data/glyph_render.hpp  renders glyph sets with FreeType: include it
//                              yourself and link FreeType (CMake:
//                              Freetype::Freetype, by hand: -lfreetype).
//                              Reading a rendered set (data/glyphs.hpp) needs
//                              no FreeType and is included.
//
// Needs Eigen 3 and zlib (checkpoints, model files, glyph sets and .gz IDX
// files read and write with it): the CMake target nsl::nsl brings both (zlib
// when CMake found it at configure time); by hand, -I<eigen3> and -lz.
// OpenMP and xsimd (NSL_HAVE_XSIMD=1) are optional. Builds with and without
// exceptions (nsl/core/error.hpp).
#pragma once

// core/
#include "nsl/core/bytes.hpp"
#include "nsl/core/device.hpp"
#include "nsl/core/error.hpp"
#include "nsl/core/gemm.hpp"
#include "nsl/core/random.hpp"
#include "nsl/core/shape.hpp"
#include "nsl/core/tensor.hpp"
#include "nsl/core/threads.hpp"

// similarity/ and data/
#include "nsl/data/augment.hpp"
#include "nsl/data/cifar.hpp"
#include "nsl/data/glyphs.hpp"
#include "nsl/data/idx.hpp"
#include "nsl/similarity/bilinear.hpp"
#include "nsl/similarity/regularizers.hpp"

// ops/
#include "nsl/ops/activation.hpp"
#include "nsl/ops/attention.hpp"
#include "nsl/ops/batchnorm.hpp"
#include "nsl/ops/conv2d.hpp"
#include "nsl/ops/dynamic_conv2d.hpp"
#include "nsl/ops/im2col.hpp"
#include "nsl/ops/linear.hpp"
#include "nsl/ops/patch_transform.hpp"
#include "nsl/ops/pool.hpp"
#include "nsl/ops/prototype_scores.hpp"
#include "nsl/ops/sphere.hpp"

// layers/
#include "nsl/layers/batch_norm2d.hpp"
#include "nsl/layers/conv2d.hpp"
#include "nsl/layers/dynamic_ns_conv2d.hpp"
#include "nsl/layers/global_similarity2d.hpp"
#include "nsl/layers/layer.hpp"
#include "nsl/layers/linear.hpp"
#include "nsl/layers/max_pool2d.hpp"
#include "nsl/layers/relu.hpp"
#include "nsl/layers/similarity_predictor.hpp"
#include "nsl/layers/sphere_conv2d.hpp"
#include "nsl/layers/static_ns_conv2d.hpp"

// models/, train/, check/, fewshot/
#include "nsl/check/gradcheck.hpp"
#include "nsl/fewshot/episodes.hpp"
#include "nsl/fewshot/heads.hpp"
#include "nsl/models/cnn9.hpp"
#include "nsl/models/conv4.hpp"
#include "nsl/models/sequential.hpp"
#include "nsl/train/evaluate.hpp"
#include "nsl/train/loss.hpp"
#include "nsl/train/precise_bn.hpp"
#include "nsl/train/schedule.hpp"
#include "nsl/train/sgd.hpp"

// io/
#include "nsl/io/atomic_file.hpp"
#include "nsl/io/checkpoint.hpp"
#include "nsl/io/model_file.hpp"
#include "nsl/io/npy.hpp"
#include "nsl/deploy/deploy.hpp"
