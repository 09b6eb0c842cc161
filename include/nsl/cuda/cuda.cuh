// nsl/cuda/cuda.cuh — the whole CUDA backend in one include, for nvcc
// translation units: Cuda tensors and the Cuda specialisations of every
// operation the layers and CNN-9 use. With it included, `Conv2d<float, Cuda>`,
// `cnn9<float, Cuda>(...)`, `Sgd<float, Cuda>` and the rest compile and run on
// the GPU.
//
//     runtime.cuh        errors, device memory, cuBLAS handles
//     tensor.cuh         Tensor<T, Cuda>, TensorView<T, Cuda>, host <-> device copies
//     gemm.cuh           row-major GEMMs over cuBLAS
//     im2col.cuh         batched im2col / col2im
//     conv2d.cuh         conv2d_forward / conv2d_backward
//     similarity.cuh     fold_weights (static NSL)
//     dynamic_conv2d.cuh dynamic_conv2d_forward / _backward (dynamic NSL)
//     sphere.cuh         local input norm, filter norm, SphereConv responses
//     batchnorm.cuh      batch normalisation
//     activation.cuh     ReLU
//     pool.cuh           max-pool
//     loss.cuh           softmax cross-entropy
//     sgd.cuh            the momentum SGD update
#pragma once

#include "nsl/cuda/runtime.cuh"
#include "nsl/cuda/tensor.cuh"
#include "nsl/cuda/gemm.cuh"
#include "nsl/cuda/im2col.cuh"
#include "nsl/cuda/conv2d.cuh"
#include "nsl/cuda/similarity.cuh"
#include "nsl/cuda/dynamic_conv2d.cuh"
#include "nsl/cuda/sphere.cuh"
#include "nsl/cuda/batchnorm.cuh"
#include "nsl/cuda/activation.cuh"
#include "nsl/cuda/pool.cuh"
#include "nsl/cuda/loss.cuh"
#include "nsl/cuda/sgd.cuh"
