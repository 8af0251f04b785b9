/// \file npy.hpp
/// \brief NumPy `.npy` arrays: read versions 1.0/2.0/3.0, write 1.0 (2.0 when the header needs it),
///        byte-identical to `numpy.save` of the same array (NumPy >= 1.24 header padding).
///
/// Used for golden activations, features for the retrieval protocol and anything exchanged with
/// Python tooling. Supported element types: little-endian float32 (`'<f4'`), float64 (`'<f8'`) and
/// int64 (`'<i8'`), C (row-major) order only: a Fortran-order file is rejected rather than silently
/// transposed. Every failure is a `mscl::io_error` naming the file: bad magic or version, a
/// truncated file, trailing bytes after the data, an unsupported dtype (named), fortran_order
/// True, or a header that is not the expected Python dict literal
/// `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }` (exactly these three keys, any order).
///
/// File layout: `\x93NUMPY`, major, minor, header length (u16 LE for 1.0, u32 LE for 2.0/3.0), the
/// dict literal padded with spaces and ending in `\n` so the data starts at a multiple of 64 bytes,
/// then the raw elements.
#pragma once
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../core/shape.hpp"
#include "../core/tensor.hpp"
#include "atomic_file.hpp"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "mscl::io: the safetensors and .npy readers/writers assume a little-endian host");

namespace mscl::io {

/// The parsed preamble of a .npy file.
struct npy_header {
  int major = 1;
  int minor = 0;
  std::string descr;           ///< e.g. "<f4"
  bool fortran_order = false;
  shape_t shape;
  std::size_t data_offset = 0;  ///< first byte of the elements
  std::size_t item_size() const { return descr == "<f4" ? 4 : 8; }
};

namespace detail {

inline std::string npy_read_file(const std::string& path, const char* who) {
  std::ifstream in(path, std::ios::binary);
  MSCL_CHECK(in.good(), io_error, who << ": cannot open '" << path << "': " << std::strerror(errno));
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  MSCL_CHECK(size >= 0, io_error, who << ": cannot determine the size of '" << path << "'");
  in.seekg(0, std::ios::beg);
  std::string bytes(std::size_t(size), '\0');
  in.read(bytes.data(), size);
  MSCL_CHECK(in.gcount() == size, io_error,
             who << ": read " << in.gcount() << " of " << size << " bytes of '" << path << "'");
  return bytes;
}

/// Recursive-descent reader for the restricted Python literal numpy writes.
class npy_dict_parser {
 public:
  npy_dict_parser(const std::string& text, const std::string& path) : s_(text), path_(path) {}

  void parse(npy_header& h) {
    bool seen_descr = false, seen_fortran = false, seen_shape = false;
    ws();
    expect('{');
    for (;;) {
      ws();
      if (peek() == '}') {
        ++i_;
        break;
      }
      const std::string key = string_literal();
      ws();
      expect(':');
      ws();
      if (key == "descr") {
        dup(seen_descr, key);
        h.descr = string_literal();
      } else if (key == "fortran_order") {
        dup(seen_fortran, key);
        h.fortran_order = boolean();
      } else if (key == "shape") {
        dup(seen_shape, key);
        h.shape = tuple();
      } else {
        fail("unexpected key '" + key + "' (a .npy header holds exactly 'descr', 'fortran_order', 'shape')");
      }
      ws();
      if (peek() == ',') {
        ++i_;
        continue;
      }
      ws();
      expect('}');
      break;
    }
    ws();
    if (i_ != s_.size()) fail("unexpected text after the closing '}'");
    if (!seen_descr) fail("the header has no 'descr' key");
    if (!seen_fortran) fail("the header has no 'fortran_order' key");
    if (!seen_shape) fail("the header has no 'shape' key");
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    ::mscl::detail::throw_error<io_error>("read_npy: '" + path_ + "': malformed header dict at character " +
                                          std::to_string(i_) + ": " + what + "; header: " + printable());
  }
  std::string printable() const {
    std::string out;
    for (char c : s_) out += (c >= 32 && c < 127) ? c : '?';
    while (!out.empty() && (out.back() == ' ' || out.back() == '?')) out.pop_back();
    return out;
  }
  char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }
  void expect(char c) {
    if (peek() != c) fail(std::string("expected '") + c + "'");
    ++i_;
  }
  void dup(bool& seen, const std::string& key) {
    if (seen) fail("key '" + key + "' appears twice");
    seen = true;
  }
  std::string string_literal() {
    const char q = peek();
    if (q != '\'' && q != '"') fail("expected a quoted string");
    ++i_;
    std::string out;
    while (i_ < s_.size() && s_[i_] != q) {
      if (s_[i_] == '\\') fail("escape sequences are not supported in header strings");
      out += s_[i_++];
    }
    if (i_ >= s_.size()) fail("unterminated string");
    ++i_;
    return out;
  }
  bool boolean() {
    if (s_.compare(i_, 4, "True") == 0) {
      i_ += 4;
      return true;
    }
    if (s_.compare(i_, 5, "False") == 0) {
      i_ += 5;
      return false;
    }
    fail("expected True or False");
  }
  shape_t tuple() {
    expect('(');
    shape_t out;
    bool need_comma_for_single = false;
    for (;;) {
      ws();
      if (peek() == ')') {
        ++i_;
        break;
      }
      if (!std::isdigit(static_cast<unsigned char>(peek()))) fail("shape entries must be non-negative integers");
      std::uint64_t v = 0;
      while (std::isdigit(static_cast<unsigned char>(peek()))) {
        const std::uint64_t digit = std::uint64_t(s_[i_++] - '0');
        if (v > (std::uint64_t(INT64_MAX) - digit) / 10) fail("shape entry is too large");
        v = v * 10 + digit;
      }
      if (peek() == 'L') ++i_;  // Python 2 long suffix in old files
      out.push_back(index_t(v));
      ws();
      if (peek() == ',') {
        ++i_;
        need_comma_for_single = false;
        continue;
      }
      need_comma_for_single = out.size() == 1;
      ws();
      expect(')');
      break;
    }
    // "(5)" is the integer 5 in Python, not a tuple; numpy writes "(5,)".
    if (need_comma_for_single) fail("a one-element shape needs a trailing comma, e.g. (5,)");
    return out;
  }

  const std::string& s_;
  const std::string& path_;
  std::size_t i_ = 0;
};

inline npy_header npy_parse_preamble(const std::string& bytes, const std::string& path) {
  static const char magic[] = "\x93NUMPY";
  MSCL_CHECK(bytes.size() >= 6 && std::memcmp(bytes.data(), magic, 6) == 0, io_error,
             "read_npy: '" << path << "' is not a .npy file (no \\x93NUMPY magic at the start; "
                           << bytes.size() << " bytes)");
  MSCL_CHECK(bytes.size() >= 8, io_error, "read_npy: '" << path << "' is truncated inside the version field");
  npy_header h;
  h.major = static_cast<unsigned char>(bytes[6]);
  h.minor = static_cast<unsigned char>(bytes[7]);
  MSCL_CHECK((h.major >= 1 && h.major <= 3) && h.minor == 0, io_error,
             "read_npy: '" << path << "' has format version " << h.major << "." << h.minor
                           << "; supported: 1.0, 2.0, 3.0");
  std::size_t len_bytes = h.major == 1 ? 2 : 4;
  MSCL_CHECK(bytes.size() >= 8 + len_bytes, io_error,
             "read_npy: '" << path << "' is truncated inside the header length field");
  std::uint32_t hlen = 0;
  for (std::size_t k = 0; k < len_bytes; ++k)
    hlen |= std::uint32_t(static_cast<unsigned char>(bytes[8 + k])) << (8 * k);
  h.data_offset = 8 + len_bytes + hlen;
  MSCL_CHECK(h.data_offset <= bytes.size(), io_error,
             "read_npy: '" << path << "' is truncated: the header claims " << hlen << " bytes but the file has "
                           << bytes.size() << " bytes in all");
  const std::string dict = bytes.substr(8 + len_bytes, hlen);
  npy_dict_parser(dict, path).parse(h);
  MSCL_CHECK(h.descr == "<f4" || h.descr == "<f8" || h.descr == "<i8", io_error,
             "read_npy: '" << path << "' has unsupported dtype '" << h.descr
                           << "'; supported: '<f4' (float32), '<f8' (float64), '<i8' (int64), little-endian");
  MSCL_CHECK(!h.fortran_order, io_error,
             "read_npy: '" << path << "' is stored in Fortran (column-major) order, which mscl does not read; "
                           << "re-save it with numpy.ascontiguousarray");
  std::uint64_t numel = 1;
  for (index_t d : h.shape)
    MSCL_CHECK(!__builtin_mul_overflow(numel, std::uint64_t(d), &numel), io_error,
               "read_npy: '" << path << "' has shape " << mscl::to_string(h.shape) << ", too many elements");
  std::uint64_t need = 0;
  MSCL_CHECK(!__builtin_mul_overflow(numel, std::uint64_t(h.item_size()), &need), io_error,
             "read_npy: '" << path << "' has shape " << mscl::to_string(h.shape) << ", too many bytes");
  const std::uint64_t have = bytes.size() - h.data_offset;
  MSCL_CHECK(have >= need, io_error,
             "read_npy: '" << path << "' is truncated: shape " << mscl::to_string(h.shape) << " of " << h.descr << " needs "
                           << need << " data bytes but only " << have << " follow the header");
  MSCL_CHECK(have == need, io_error,
             "read_npy: '" << path << "' has " << (have - need) << " unexpected bytes after the " << need
                           << " data bytes of shape " << mscl::to_string(h.shape));
  return h;
}

/// The numpy header for (descr, shape), C order, including magic and padding.
inline std::string npy_make_preamble(const std::string& descr, const shape_t& shape) {
  std::string dict = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': (";
  for (std::size_t i = 0; i < shape.size(); ++i) dict += (i ? ", " : "") + std::to_string(shape[i]);
  if (shape.size() == 1) dict += ',';
  dict += "), }";
  // numpy >= 1.24 leaves room to grow axis 0 in place: 21 minus the digits of shape[0].
  if (!shape.empty()) dict.append(21 - std::to_string(shape[0]).size(), ' ');
  auto wrap = [&](int major, std::size_t len_bytes) {
    const std::size_t hlen = dict.size() + 1;  // + '\n'
    const std::size_t pad = 64 - (6 + 2 + len_bytes + hlen) % 64;
    const std::uint64_t total = hlen + pad;
    std::string out = "\x93NUMPY";
    out += char(major);
    out += char(0);
    for (std::size_t k = 0; k < len_bytes; ++k) out += char((total >> (8 * k)) & 0xff);
    out += dict;
    out.append(pad, ' ');
    out += '\n';
    return out;
  };
  // Like numpy: version 1.0 unless the padded header overflows its u16 length field.
  const std::size_t v1_hlen = dict.size() + 1;
  const std::size_t v1_total = v1_hlen + 64 - (10 + v1_hlen) % 64;
  return v1_total <= 0xffff ? wrap(1, 2) : wrap(2, 4);
}

}  // namespace detail

/// Reads only the preamble of `path` (validating it against the file size).
inline npy_header read_npy_header(const std::string& path) {
  return detail::npy_parse_preamble(detail::npy_read_file(path, "read_npy"), path);
}

/// Reads a '<f4' or '<f8' array as tensor<T> (T float or double; f8 -> float rounds).
template <class T>
tensor<T> read_npy(const std::string& path) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "read_npy<T>: T must be float or double");
  const std::string bytes = detail::npy_read_file(path, "read_npy");
  const npy_header h = detail::npy_parse_preamble(bytes, path);
  MSCL_CHECK(h.descr != "<i8", io_error,
             "read_npy: '" << path << "' holds int64 ('<i8'); read it with read_npy_int64");
  tensor<T> out = tensor<T>::empty(h.shape);
  const char* src = bytes.data() + h.data_offset;
  const std::size_t n = std::size_t(out.numel());
  if (h.descr == "<f4") {
    if constexpr (std::is_same_v<T, float>) {
      if (n) std::memcpy(out.data(), src, n * 4);
    } else {
      for (std::size_t i = 0; i < n; ++i) {
        float v;
        std::memcpy(&v, src + 4 * i, 4);
        out.data()[i] = T(v);
      }
    }
  } else {
    if constexpr (std::is_same_v<T, double>) {
      if (n) std::memcpy(out.data(), src, n * 8);
    } else {
      for (std::size_t i = 0; i < n; ++i) {
        double v;
        std::memcpy(&v, src + 8 * i, 8);
        out.data()[i] = T(v);
      }
    }
  }
  return out;
}

/// Reads a '<i8' array: (values in row-major order, shape).
inline std::pair<std::vector<std::int64_t>, shape_t> read_npy_int64(const std::string& path) {
  const std::string bytes = detail::npy_read_file(path, "read_npy_int64");
  const npy_header h = detail::npy_parse_preamble(bytes, path);
  MSCL_CHECK(h.descr == "<i8", io_error,
             "read_npy_int64: '" << path << "' holds '" << h.descr << "', not int64 ('<i8'); read it with read_npy<T>");
  std::vector<std::int64_t> values(std::size_t(numel_of(h.shape)));
  if (!values.empty()) std::memcpy(values.data(), bytes.data() + h.data_offset, values.size() * 8);
  return {std::move(values), h.shape};
}

/// Writes `t` (float -> '<f4', double -> '<f8'; any strides, stored row-major) atomically.
template <class T>
void write_npy(const std::string& path, const tensor<T>& t) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "write_npy<T>: T must be float or double");
  const std::string head = detail::npy_make_preamble(std::is_same_v<T, float> ? "<f4" : "<f8", t.shape());
  const std::vector<T> values = t.to_vector();
  write_file_atomic(path, [&](atomic_file& f) {
    f.write(head);
    f.write(values.data(), values.size() * sizeof(T));
  });
}

/// Writes int64 `values` with `shape` as '<i8' atomically.
inline void write_npy_int64(const std::string& path, const std::vector<std::int64_t>& values, const shape_t& shape) {
  for (index_t d : shape)
    MSCL_CHECK(d >= 0, shape_error, "write_npy_int64: '" << path << "': negative extent in shape " << mscl::to_string(shape));
  MSCL_CHECK(index_t(values.size()) == numel_of(shape), shape_error,
             "write_npy_int64: '" << path << "': shape " << mscl::to_string(shape) << " holds " << numel_of(shape)
                                  << " elements but " << values.size() << " values were given");
  const std::string head = detail::npy_make_preamble("<i8", shape);
  write_file_atomic(path, [&](atomic_file& f) {
    f.write(head);
    f.write(values.data(), values.size() * 8);
  });
}

}  // namespace mscl::io
