/// \file config.hpp
/// \brief Version numbers and feature macros. Every optional part is switched by a macro that
///        CMake sets on its own INTERFACE target (mscl::onednn, ...); the core needs none of them.
#pragma once

#define MSCL_VERSION_MAJOR 0
#define MSCL_VERSION_MINOR 1
#define MSCL_VERSION_PATCH 0
#define MSCL_VERSION_STRING "0.1.0"

#ifndef MSCL_WITH_ONEDNN
#define MSCL_WITH_ONEDNN 0
#endif

#if defined(_OPENMP)
#define MSCL_WITH_OPENMP 1
#else
#define MSCL_WITH_OPENMP 0
#endif

namespace mscl {
inline constexpr int version_major = MSCL_VERSION_MAJOR;
inline constexpr int version_minor = MSCL_VERSION_MINOR;
inline constexpr int version_patch = MSCL_VERSION_PATCH;
inline constexpr const char* version_string = MSCL_VERSION_STRING;
}  // namespace mscl
