/// \file tags.hpp
/// \brief Backend tags. The backend is part of a tensor's type: `tensor<float, cpu>`.
#pragma once
#include <type_traits>

namespace mscl {

/// Host memory; kernels in backend/cpu/ (Eigen GEMM, oneDNN when enabled, OpenMP loops).
struct cpu {
  static constexpr const char* name = "cpu";
};
/// Device memory; kernels in backend/cuda/ (cuDNN, cuBLAS, .cuh). Declared here so that code can
/// name the tag; using it without the CUDA backend compiled in fails at compile time.
struct cuda {
  static constexpr const char* name = "cuda";
};

namespace detail {
template <class...>
inline constexpr bool always_false_v = false;
}  // namespace detail

template <class Backend>
inline constexpr bool is_backend_v = std::is_same_v<Backend, cpu> || std::is_same_v<Backend, cuda>;

}  // namespace mscl
