/// \file shape.hpp
/// \brief Shapes and strides (row-major, in elements) and their printing.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <sstream>
#include <string>
#include <vector>

#include "error.hpp"

namespace mscl {

using index_t = std::int64_t;
using shape_t = std::vector<index_t>;

inline index_t numel_of(const shape_t& shape) {
  index_t n = 1;
  for (index_t d : shape) n *= d;
  return n;
}

inline shape_t contiguous_strides(const shape_t& shape) {
  shape_t strides(shape.size());
  index_t s = 1;
  for (std::size_t i = shape.size(); i-- > 0;) {
    strides[i] = s;
    s *= shape[i];
  }
  return strides;
}

/// "[8, 3, 8, 112, 112]"
inline std::string to_string(const shape_t& shape) {
  std::ostringstream os;
  os << '[';
  for (std::size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << ']';
  return os.str();
}

/// Normalises a possibly negative axis against a rank; throws naming the caller.
inline int normalize_axis(int axis, std::size_t rank, const char* who) {
  const int r = static_cast<int>(rank);
  MSCL_CHECK(axis >= -r && axis < r, shape_error,
             who << ": axis " << axis << " is out of range for a tensor of rank " << r);
  return axis < 0 ? axis + r : axis;
}

}  // namespace mscl
