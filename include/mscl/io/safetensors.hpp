/// \file safetensors.hpp
/// \brief Strict reader and byte-reproducible writer for the huggingface safetensors format.
///
/// Layout (ECOSYSTEM §4.1): bytes 0-7 hold N (u64 little-endian); the next N bytes are a UTF-8
/// JSON object starting with `{`, possibly right-padded with spaces, mapping each tensor name to
/// `{"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}` (offsets relative to the first
/// byte after the header, end exclusive) plus an optional `"__metadata__"` string->string map;
/// the rest of the file is the data section, little-endian, C (row-major) order.
///
/// The reader (`safetensors_file`) validates everything before handing out a tensor, because
/// weights come from foreign tools and a silently misread tensor only shows up as a bad accuracy
/// many hours later. Every failure is a `mscl::io_error` naming the file and, where one is
/// involved, the tensor. Checked rules: file shorter than 8 bytes; N above 100 MB (the reference
/// parsers' cap) or past the end of the file; header not starting with `{`, not valid JSON
/// (including invalid UTF-8), not an object; duplicate keys at any level; an entry that is not an
/// object or lacks dtype/shape/data_offsets; unknown dtype; shape entries that are not
/// non-negative integers; data_offsets that are not two non-negative integers; begin > end; end past
/// the data section; byte count != numel x dtype size; overlapping ranges; holes (the data
/// section must be covered exactly, trailing bytes included); `__metadata__` not a
/// string->string map. Unknown extra fields inside an entry are ignored, as the reference does.
///
/// The writer (`safetensors_writer`) emits what the reference Rust writer emits for the same
/// tensors: entries ordered by DECREASING dtype rank in the reference's `Dtype` enum order (for the
/// types written here: I64, then F64, then F32), then by name (bytewise); compact JSON with the
/// keys dtype, shape, data_offsets in that order; `__metadata__` first when present (its keys in
/// sorted order: the reference uses a hash map, so its order is unspecified); header padded with
/// spaces to a multiple of 8 bytes. The file is written through `atomic_file`.
///
/// The whole file is read into memory (a 33 M-parameter r3d_18 is 133 MB); no mmap.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "../core/shape.hpp"
#include "../core/tensor.hpp"
#include "atomic_file.hpp"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "mscl::io: the safetensors and .npy readers/writers assume a little-endian host");

namespace mscl::io {

// ============================================================================ dtypes

/// safetensors element types, in the reference's `Dtype` enum order (increasing alignment); the
/// writer's ordering rule depends on this order.
enum class safetensors_dtype : int {
  BOOL, F4, F6_E2M3, F6_E3M2, U8, I8, F8_E5M2, F8_E4M3, F8_E8M0,
  I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64
};

namespace detail {
struct st_dtype_row {
  safetensors_dtype type;
  const char* name;
  int bits;  ///< per element; F4 and F6 are sub-byte
};
inline const st_dtype_row* st_dtype_table() {
  static const st_dtype_row rows[] = {
      {safetensors_dtype::BOOL, "BOOL", 8},       {safetensors_dtype::F4, "F4", 4},
      {safetensors_dtype::F6_E2M3, "F6_E2M3", 6}, {safetensors_dtype::F6_E3M2, "F6_E3M2", 6},
      {safetensors_dtype::U8, "U8", 8},           {safetensors_dtype::I8, "I8", 8},
      {safetensors_dtype::F8_E5M2, "F8_E5M2", 8}, {safetensors_dtype::F8_E4M3, "F8_E4M3", 8},
      {safetensors_dtype::F8_E8M0, "F8_E8M0", 8}, {safetensors_dtype::I16, "I16", 16},
      {safetensors_dtype::U16, "U16", 16},        {safetensors_dtype::F16, "F16", 16},
      {safetensors_dtype::BF16, "BF16", 16},      {safetensors_dtype::I32, "I32", 32},
      {safetensors_dtype::U32, "U32", 32},        {safetensors_dtype::F32, "F32", 32},
      {safetensors_dtype::F64, "F64", 64},        {safetensors_dtype::I64, "I64", 64},
      {safetensors_dtype::U64, "U64", 64},
  };
  return rows;
}
constexpr int st_dtype_count = 19;
}  // namespace detail

inline const char* to_string(safetensors_dtype t) { return detail::st_dtype_table()[int(t)].name; }
inline int bits_of(safetensors_dtype t) { return detail::st_dtype_table()[int(t)].bits; }
/// Parses "F32", "BF16", ...; false when the name is not a safetensors dtype.
inline bool parse_safetensors_dtype(std::string_view name, safetensors_dtype& out) {
  for (int i = 0; i < detail::st_dtype_count; ++i)
    if (name == detail::st_dtype_table()[i].name) {
      out = detail::st_dtype_table()[i].type;
      return true;
    }
  return false;
}

/// What the header says about one tensor.
struct safetensors_tensor_info {
  safetensors_dtype dtype = safetensors_dtype::F32;
  shape_t shape;
  std::uint64_t begin = 0;  ///< offset into the data section
  std::uint64_t end = 0;    ///< exclusive
  std::uint64_t byte_size() const { return end - begin; }
  index_t numel() const { return numel_of(shape); }
};

// ============================================================================ element decoding
namespace detail {

inline float st_half_to_float(std::uint16_t h) {
  const std::uint32_t sign = std::uint32_t(h >> 15) << 31;
  const int exp = (h >> 10) & 0x1f;
  const std::uint32_t mant = h & 0x3ff;
  float magnitude;
  if (exp == 0)
    magnitude = std::ldexp(float(mant), -24);  // subnormal (or zero)
  else if (exp == 31)
    magnitude = mant ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
  else
    magnitude = std::ldexp(float(mant | 0x400), exp - 25);
  std::uint32_t bits;
  std::memcpy(&bits, &magnitude, 4);
  bits |= sign;
  float out;
  std::memcpy(&out, &bits, 4);
  return out;
}
inline float st_bf16_to_float(std::uint16_t b) {
  const std::uint32_t bits = std::uint32_t(b) << 16;
  float out;
  std::memcpy(&out, &bits, 4);
  return out;
}
/// OCP FP8 E4M3 ("fn": no infinities, S.1111.111 is NaN), bias 7.
inline float st_f8_e4m3_to_float(std::uint8_t v) {
  const bool neg = v & 0x80;
  const int exp = (v >> 3) & 0xf;
  const int mant = v & 0x7;
  float m;
  if (exp == 15 && mant == 7)
    m = std::numeric_limits<float>::quiet_NaN();
  else if (exp == 0)
    m = std::ldexp(float(mant), -9);
  else
    m = std::ldexp(float(mant | 8), exp - 10);
  return neg ? -m : m;
}
/// E5M2 is the upper byte of an IEEE half.
inline float st_f8_e5m2_to_float(std::uint8_t v) { return st_half_to_float(std::uint16_t(v) << 8); }
/// E8M0: an unsigned power of two, 0xFF is NaN.
inline float st_f8_e8m0_to_float(std::uint8_t v) {
  return v == 0xff ? std::numeric_limits<float>::quiet_NaN() : std::ldexp(1.0f, int(v) - 127);
}

template <class U>
inline U st_load(const char* p) {
  U v;
  std::memcpy(&v, p, sizeof(U));
  return v;
}

/// Decodes `n` elements of type `t` from `src` into `dst` (float or double).
/// Returns false for types without a decoder (F4, F6_*).
template <class T>
bool st_decode(safetensors_dtype t, const char* src, std::size_t n, T* dst) {
  using D = safetensors_dtype;
  switch (t) {
    case D::BOOL:
      for (std::size_t i = 0; i < n; ++i) dst[i] = src[i] ? T(1) : T(0);
      return true;
    case D::U8:
      for (std::size_t i = 0; i < n; ++i) dst[i] = T(st_load<std::uint8_t>(src + i));
      return true;
    case D::I8:
      for (std::size_t i = 0; i < n; ++i) dst[i] = T(st_load<std::int8_t>(src + i));
      return true;
    case D::F8_E5M2:
      for (std::size_t i = 0; i < n; ++i) dst[i] = T(st_f8_e5m2_to_float(std::uint8_t(src[i])));
      return true;
    case D::F8_E4M3:
      for (std::size_t i = 0; i < n; ++i) dst[i] = T(st_f8_e4m3_to_float(std::uint8_t(src[i])));
      return true;
    case D::F8_E8M0:
      for (std::size_t i = 0; i < n; ++i) dst[i] = T(st_f8_e8m0_to_float(std::uint8_t(src[i])));
      return true;
    case D::I16:
      for (std::size_t i = 0; i < n; ++i) dst[i] = T(st_load<std::int16_t>(src + 2 * i));
      return true;
    case D::U16:
      for (std::size_t i = 0; i < n; ++i) dst[i] = T(st_load<std::uint16_t>(src + 2 * i));
      return true;
    case D::F16:
      for (std::size_t i = 0; i < n; ++i) dst[i] = T(st_half_to_float(st_load<std::uint16_t>(src + 2 * i)));
      return true;
    case D::BF16:
      for (std::size_t i = 0; i < n; ++i) dst[i] = T(st_bf16_to_float(st_load<std::uint16_t>(src + 2 * i)));
      return true;
    case D::I32:
      for (std::size_t i = 0; i < n; ++i) dst[i] = T(st_load<std::int32_t>(src + 4 * i));
      return true;
    case D::U32:
      for (std::size_t i = 0; i < n; ++i) dst[i] = T(st_load<std::uint32_t>(src + 4 * i));
      return true;
    case D::F32:
      for (std::size_t i = 0; i < n; ++i) dst[i] = T(st_load<float>(src + 4 * i));
      return true;
    case D::F64:
      for (std::size_t i = 0; i < n; ++i) dst[i] = T(st_load<double>(src + 8 * i));
      return true;
    case D::I64:
      for (std::size_t i = 0; i < n; ++i) dst[i] = T(st_load<std::int64_t>(src + 8 * i));
      return true;
    case D::U64:
      for (std::size_t i = 0; i < n; ++i) dst[i] = T(st_load<std::uint64_t>(src + 8 * i));
      return true;
    default:
      return false;
  }
}

inline bool st_mul_overflows(std::uint64_t a, std::uint64_t b, std::uint64_t& out) {
  return __builtin_mul_overflow(a, b, &out);
}

/// JSON string literal for `s` as serde_json writes it (control characters escaped, UTF-8 kept).
/// Throws value_error naming `what` when `s` is not valid UTF-8.
inline std::string st_json_string(const std::string& s, const char* who, const std::string& what) {
  try {
    return nlohmann::json(s).dump();
  } catch (const nlohmann::json::exception& e) {
    ::mscl::detail::throw_error<value_error>(std::string(who) + ": " + what + " is not valid UTF-8 (" + e.what() + ")");
  }
}

}  // namespace detail

// ============================================================================ reader

/// A validated safetensors file held in memory. See the file comment for the checked rules.
class safetensors_file {
 public:
  /// The reference parsers' cap on the JSON header.
  static constexpr std::uint64_t max_header_bytes = 100'000'000;

  safetensors_file() = default;

  /// Reads and validates `path`. Throws io_error naming the file (and tensor) on any violation.
  static safetensors_file open(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    MSCL_CHECK(in.good(), io_error,
               "safetensors_file::open: cannot open '" << path << "': " << std::strerror(errno));
    in.seekg(0, std::ios::end);
    const std::streamoff size = in.tellg();
    MSCL_CHECK(size >= 0, io_error, "safetensors_file::open: cannot determine the size of '" << path << "'");
    in.seekg(0, std::ios::beg);
    std::string bytes(std::size_t(size), '\0');
    in.read(bytes.data(), size);
    MSCL_CHECK(in.gcount() == size, io_error,
               "safetensors_file::open: read " << in.gcount() << " of " << size << " bytes of '" << path << "'");
    return from_bytes(std::move(bytes), path);
  }

  /// Validates an in-memory file image; `name` stands for the file in error messages.
  static safetensors_file from_bytes(std::string bytes, std::string name = "<memory>") {
    safetensors_file f;
    f.path_ = std::move(name);
    f.bytes_ = std::move(bytes);
    f.parse();
    return f;
  }

  const std::string& path() const { return path_; }
  std::size_t size() const { return entries_.size(); }
  /// Tensor names, sorted (bytewise).
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    out.reserve(entries_.size());
    for (const auto& kv : entries_) out.push_back(kv.first);
    return out;
  }
  bool contains(const std::string& name) const { return entries_.count(name) != 0; }
  const safetensors_tensor_info& info(const std::string& name) const { return find(name, "info"); }
  /// The `__metadata__` map (empty when absent).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  /// Header length N as stored in the first 8 bytes.
  std::uint64_t header_bytes() const { return header_len_; }

  /// The stored bytes of one tensor (little-endian, row-major).
  std::string_view raw(const std::string& name) const {
    const auto& e = find(name, "raw");
    return std::string_view(bytes_.data() + data_start() + e.begin, std::size_t(e.byte_size()));
  }

  /// The tensor `name` converted to T (float or double) from any dtype except F4/F6.
  /// Integers wider than T's mantissa round (I64 -> double is exact below 2^53).
  template <class T>
  tensor<T> get(const std::string& name) const {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                  "safetensors_file::get<T>: T must be float or double");
    const auto& e = find(name, "get");
    tensor<T> out = tensor<T>::empty(e.shape);
    const bool ok = detail::st_decode<T>(e.dtype, bytes_.data() + data_start() + e.begin,
                                         std::size_t(e.numel()), out.data());
    MSCL_CHECK(ok, io_error,
               "safetensors_file::get: '" << path_ << "': tensor '" << name << "' has dtype " << to_string(e.dtype)
                                          << ", which has no conversion to floating point in mscl");
    return out;
  }

  /// As `get`, but first checks the stored shape; throws shape_error naming the tensor, the
  /// expected and the stored shape.
  template <class T>
  tensor<T> get(const std::string& name, const shape_t& expected_shape) const {
    const auto& e = find(name, "get");
    MSCL_CHECK(e.shape == expected_shape, shape_error,
               "safetensors_file::get: '" << path_ << "': tensor '" << name << "' expected shape "
                                          << mscl::to_string(expected_shape) << " but the file stores "
                                          << mscl::to_string(e.shape));
    return get<T>(name);
  }

  /// Integer tensor values (I64, and exactly-representable I8..U32, U64 <= INT64_MAX, BOOL), e.g. the
  /// I64 scalar `num_batches_tracked`. Floating dtypes are a shape_error (wrong dtype).
  std::vector<std::int64_t> get_int64(const std::string& name) const {
    const auto& e = find(name, "get_int64");
    const char* src = bytes_.data() + data_start() + e.begin;
    const std::size_t n = std::size_t(e.numel());
    std::vector<std::int64_t> out(n);
    using D = safetensors_dtype;
    using detail::st_load;
    switch (e.dtype) {
      case D::BOOL: for (std::size_t i = 0; i < n; ++i) out[i] = src[i] ? 1 : 0; break;
      case D::U8:   for (std::size_t i = 0; i < n; ++i) out[i] = st_load<std::uint8_t>(src + i); break;
      case D::I8:   for (std::size_t i = 0; i < n; ++i) out[i] = st_load<std::int8_t>(src + i); break;
      case D::I16:  for (std::size_t i = 0; i < n; ++i) out[i] = st_load<std::int16_t>(src + 2 * i); break;
      case D::U16:  for (std::size_t i = 0; i < n; ++i) out[i] = st_load<std::uint16_t>(src + 2 * i); break;
      case D::I32:  for (std::size_t i = 0; i < n; ++i) out[i] = st_load<std::int32_t>(src + 4 * i); break;
      case D::U32:  for (std::size_t i = 0; i < n; ++i) out[i] = st_load<std::uint32_t>(src + 4 * i); break;
      case D::I64:  for (std::size_t i = 0; i < n; ++i) out[i] = st_load<std::int64_t>(src + 8 * i); break;
      case D::U64:
        for (std::size_t i = 0; i < n; ++i) {
          const auto v = st_load<std::uint64_t>(src + 8 * i);
          MSCL_CHECK(v <= std::uint64_t(std::numeric_limits<std::int64_t>::max()), value_error,
                     "safetensors_file::get_int64: '" << path_ << "': tensor '" << name << "' element " << i
                                                      << " = " << v << " does not fit in int64");
          out[i] = std::int64_t(v);
        }
        break;
      default:
        MSCL_CHECK(false, shape_error,
                   "safetensors_file::get_int64: '" << path_ << "': tensor '" << name << "' has dtype "
                                                    << to_string(e.dtype) << ", expected an integer dtype (I64)");
    }
    return out;
  }

 private:
  std::uint64_t data_start() const { return 8 + header_len_; }

  const safetensors_tensor_info& find(const std::string& name, const char* who) const {
    auto it = entries_.find(name);
    MSCL_CHECK(it != entries_.end(), io_error,
               "safetensors_file::" << who << ": '" << path_ << "' has no tensor named '" << name << "' ("
                                    << entries_.size() << " tensors)");
    return it->second;
  }

  [[noreturn]] void fail(const std::string& what) const {
    ::mscl::detail::throw_error<io_error>("safetensors: '" + path_ + "': " + what);
  }
  [[noreturn]] void fail_tensor(const std::string& name, const std::string& what) const {
    fail("tensor '" + name + "': " + what);
  }

  void parse() {
    using json = nlohmann::json;
    const std::uint64_t file_size = bytes_.size();
    if (file_size < 8)
      fail("file is " + std::to_string(file_size) + " bytes, shorter than the 8-byte header length field");
    header_len_ = detail::st_load<std::uint64_t>(bytes_.data());
    if (header_len_ > max_header_bytes)
      fail("header length " + std::to_string(header_len_) + " exceeds the 100 MB limit (" +
           std::to_string(max_header_bytes) + " bytes)");
    if (header_len_ > file_size - 8)
      fail("header length " + std::to_string(header_len_) + " runs past the end of the file (" +
           std::to_string(file_size) + " bytes, so at most " + std::to_string(file_size - 8) + ")");
    const char* hdr = bytes_.data() + 8;
    if (header_len_ == 0 || hdr[0] != '{') fail("the JSON header does not start with '{'");
    // nlohmann stops at a NUL as if the input ended, so zero padding would slip through; a NUL
    // can never be part of valid JSON (padding must be spaces).
    if (std::memchr(hdr, '\0', std::size_t(header_len_)) != nullptr)
      fail("the header is not valid JSON: it contains a NUL byte (padding must be spaces)");

    // Duplicate keys are invalid but a JSON object keeps only the last one, so they are caught
    // during parsing: one key set per open object.
    std::vector<std::set<std::string>> open_objects;
    std::string top_key, duplicate, duplicate_in;
    auto on_event = [&](int /*depth*/, json::parse_event_t ev, json& parsed) {
      if (ev == json::parse_event_t::object_start) {
        open_objects.emplace_back();
      } else if (ev == json::parse_event_t::object_end) {
        if (!open_objects.empty()) open_objects.pop_back();
      } else if (ev == json::parse_event_t::key && !open_objects.empty()) {
        const std::string& k = parsed.get_ref<const std::string&>();
        if (open_objects.size() == 1) top_key = k;
        if (!open_objects.back().insert(k).second && duplicate.empty()) {
          duplicate = k;
          duplicate_in = open_objects.size() == 1 ? std::string() : top_key;
        }
      }
      return true;
    };
    json header;
    try {
      header = json::parse(hdr, hdr + header_len_, on_event, /*allow_exceptions=*/true);
    } catch (const json::exception& e) {
      fail(std::string("the header is not valid JSON: ") + e.what());
    }
    if (!duplicate.empty()) {
      if (duplicate_in.empty()) fail_tensor(duplicate, "the name appears more than once in the header");
      fail_tensor(duplicate_in, "field '" + duplicate + "' appears more than once");
    }
    if (!header.is_object()) fail("the header is not a JSON object");

    const std::uint64_t data_size = file_size - 8 - header_len_;
    for (auto it = header.begin(); it != header.end(); ++it) {
      const std::string& name = it.key();
      const json& v = it.value();
      if (name == "__metadata__") {
        if (!v.is_object()) fail("__metadata__ must be an object mapping strings to strings, got " +
                                 std::string(v.type_name()));
        for (auto m = v.begin(); m != v.end(); ++m) {
          if (!m.value().is_string())
            fail("__metadata__ must map strings to strings, but key '" + m.key() + "' holds a " +
                 m.value().type_name());
          metadata_[m.key()] = m.value().get<std::string>();
        }
        continue;
      }
      entries_[name] = parse_entry(name, v, data_size);
    }
    check_coverage(data_size);
  }

  safetensors_tensor_info parse_entry(const std::string& name, const nlohmann::json& v,
                                      std::uint64_t data_size) const {
    if (!v.is_object()) fail_tensor(name, "entry must be an object, got " + std::string(v.type_name()));
    for (const char* field : {"dtype", "shape", "data_offsets"})
      if (!v.contains(field)) fail_tensor(name, std::string("entry has no \"") + field + "\"");
    safetensors_tensor_info info;
    const auto& dt = v["dtype"];
    if (!dt.is_string()) fail_tensor(name, "dtype must be a string, got " + dt.dump());
    if (!parse_safetensors_dtype(dt.get_ref<const std::string&>(), info.dtype))
      fail_tensor(name, "unknown dtype " + dt.dump());

    const auto& sh = v["shape"];
    if (!sh.is_array()) fail_tensor(name, "shape must be an array, got " + sh.dump());
    std::uint64_t numel = 1;
    for (const auto& d : sh) {
      // is_number_unsigned: a non-negative integer literal (no sign, fraction or exponent).
      if (!d.is_number_unsigned() ||
          d.get<std::uint64_t>() > std::uint64_t(std::numeric_limits<index_t>::max()))
        fail_tensor(name, "shape entries must be non-negative integers, got shape " + sh.dump());
      const std::uint64_t extent = d.get<std::uint64_t>();
      if (detail::st_mul_overflows(numel, extent, numel))
        fail_tensor(name, "shape " + sh.dump() + " overflows 64-bit element counts");
      info.shape.push_back(index_t(extent));
    }
    std::uint64_t bits;
    if (detail::st_mul_overflows(numel, std::uint64_t(bits_of(info.dtype)), bits))
      fail_tensor(name, "shape " + sh.dump() + " overflows 64-bit byte counts");
    if (bits % 8 != 0)
      fail_tensor(name, "shape " + sh.dump() + " of sub-byte dtype " + to_string(info.dtype) +
                            " does not fill a whole number of bytes");

    const auto& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      fail_tensor(name, "data_offsets must be two non-negative integers [begin, end], got " + off.dump());
    info.begin = off[0].get<std::uint64_t>();
    info.end = off[1].get<std::uint64_t>();
    if (info.begin > info.end)
      fail_tensor(name, "data_offsets begin " + std::to_string(info.begin) + " > end " + std::to_string(info.end));
    if (info.end > data_size)
      fail_tensor(name, "data_offsets end " + std::to_string(info.end) + " is beyond the data section (" +
                            std::to_string(data_size) + " bytes)");
    if (info.end - info.begin != bits / 8)
      fail_tensor(name, "data_offsets [" + std::to_string(info.begin) + ", " + std::to_string(info.end) + ") hold " +
                            std::to_string(info.end - info.begin) + " bytes but shape " + sh.dump() + " of " +
                            to_string(info.dtype) + " needs " + std::to_string(bits / 8));
    return info;
  }

  /// The data section must be tiled exactly: no overlap, no hole, nothing after the last tensor.
  void check_coverage(std::uint64_t data_size) const {
    std::vector<std::pair<const std::string*, const safetensors_tensor_info*>> order;
    order.reserve(entries_.size());
    for (const auto& kv : entries_) order.emplace_back(&kv.first, &kv.second);
    std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
      return std::make_pair(a.second->begin, a.second->end) < std::make_pair(b.second->begin, b.second->end);
    });
    std::uint64_t covered = 0;
    const std::string* last = nullptr;
    for (const auto& [name, e] : order) {
      if (e->begin < covered)
        fail_tensor(*name, "data_offsets [" + std::to_string(e->begin) + ", " + std::to_string(e->end) +
                               ") overlap tensor '" + *last + "', which ends at " + std::to_string(covered));
      if (e->begin > covered)
        fail_tensor(*name, "data_offsets begin at " + std::to_string(e->begin) + " but bytes [" +
                               std::to_string(covered) + ", " + std::to_string(e->begin) +
                               ") of the data section belong to no tensor (a hole)");
      if (e->end > covered || !last) {
        covered = e->end;
        last = name;
      }
    }
    if (covered != data_size)
      fail("bytes [" + std::to_string(covered) + ", " + std::to_string(data_size) +
           ") at the end of the data section belong to no tensor (a hole)");
  }

  std::string path_;
  std::string bytes_;
  std::uint64_t header_len_ = 0;
  std::map<std::string, safetensors_tensor_info> entries_;
  std::map<std::string, std::string> metadata_;
};

// ============================================================================ writer

/// Collects named tensors and metadata, then writes a safetensors file (ordering rule in the file
/// comment). Tensors are copied when added, so later changes to them do not reach the file.
class safetensors_writer {
 public:
  /// Adds a float tensor, stored as F32 (any strides; written row-major).
  safetensors_writer& add(const std::string& name, const tensor<float>& t) {
    return add_bytes(name, safetensors_dtype::F32, t.shape(), to_bytes(t.to_vector()));
  }
  /// Adds a double tensor, stored as F64.
  safetensors_writer& add(const std::string& name, const tensor<double>& t) {
    return add_bytes(name, safetensors_dtype::F64, t.shape(), to_bytes(t.to_vector()));
  }
  /// Adds an I64 tensor (e.g. `num_batches_tracked`, shape {} for a scalar).
  safetensors_writer& add_int64(const std::string& name, const std::vector<std::int64_t>& values,
                                const shape_t& shape) {
    MSCL_CHECK(index_t(values.size()) == numel_of(shape), shape_error,
               "safetensors_writer::add_int64: tensor '" << name << "' has shape " << mscl::to_string(shape)
                                                         << " (" << numel_of(shape) << " elements) but "
                                                         << values.size() << " values were given");
    return add_bytes(name, safetensors_dtype::I64, shape, to_bytes(values));
  }
  /// Adds already-encoded little-endian bytes of any dtype (checked against shape x dtype size).
  safetensors_writer& add_raw(const std::string& name, safetensors_dtype dtype, const shape_t& shape,
                              std::string bytes) {
    for (index_t d : shape)
      MSCL_CHECK(d >= 0, shape_error,
                 "safetensors_writer::add_raw: tensor '" << name << "' has a negative extent in shape "
                                                         << mscl::to_string(shape));
    const std::uint64_t bits = std::uint64_t(numel_of(shape)) * std::uint64_t(bits_of(dtype));
    MSCL_CHECK(bits % 8 == 0 && bits / 8 == bytes.size(), shape_error,
               "safetensors_writer::add_raw: tensor '" << name << "' of " << to_string(dtype) << " and shape "
                                                       << mscl::to_string(shape) << " needs " << bits / 8.0
                                                       << " bytes, got " << bytes.size());
    return add_bytes(name, dtype, shape, std::move(bytes));
  }
  /// Sets one `__metadata__` entry (e.g. format=pt, arch=r3d_18, layout=NCTHW).
  safetensors_writer& set_metadata(const std::string& key, const std::string& value) {
    detail::st_json_string(key, "safetensors_writer::set_metadata", "key '" + key + "'");
    detail::st_json_string(value, "safetensors_writer::set_metadata", "value of '" + key + "'");
    metadata_[key] = value;
    return *this;
  }

  std::size_t size() const { return entries_.size(); }
  bool contains(const std::string& name) const { return entries_.count(name) != 0; }

  /// Names in file order (decreasing dtype rank, then name).
  std::vector<std::string> file_order() const {
    std::vector<std::string> names;
    for (const auto& kv : entries_) names.push_back(kv.first);
    std::stable_sort(names.begin(), names.end(), [&](const std::string& a, const std::string& b) {
      return int(entries_.at(a).dtype) > int(entries_.at(b).dtype);  // names already sorted by the map
    });
    return names;
  }

  /// The 8-byte length plus the padded JSON header.
  std::string header() const {
    std::string h = "{";
    bool first = true;
    if (!metadata_.empty()) {
      h += "\"__metadata__\":{";
      for (const auto& [k, v] : metadata_) {
        if (!first) h += ',';
        first = false;
        h += nlohmann::json(k).dump() + ":" + nlohmann::json(v).dump();
      }
      h += '}';
      first = false;
    }
    std::uint64_t offset = 0;
    for (const std::string& name : file_order()) {
      const entry& e = entries_.at(name);
      if (!first) h += ',';
      first = false;
      h += nlohmann::json(name).dump() + ":{\"dtype\":\"" + to_string(e.dtype) + "\",\"shape\":[";
      for (std::size_t i = 0; i < e.shape.size(); ++i) h += (i ? "," : "") + std::to_string(e.shape[i]);
      h += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + e.bytes.size()) + "]}";
      offset += e.bytes.size();
    }
    h += '}';
    h.append((8 - h.size() % 8) % 8, ' ');
    std::string out(8, '\0');
    const std::uint64_t n = h.size();
    std::memcpy(out.data(), &n, 8);
    return out + h;
  }

  /// The complete file image.
  std::string serialize() const {
    std::string out = header();
    for (const std::string& name : file_order()) out += entries_.at(name).bytes;
    return out;
  }

  /// Atomically writes the file (see atomic_file.hpp).
  void write(const std::string& path) const {
    const std::string head = header();
    write_file_atomic(path, [&](atomic_file& f) {
      f.write(head);
      for (const std::string& name : file_order()) f.write(entries_.at(name).bytes);
    });
  }

 private:
  struct entry {
    safetensors_dtype dtype;
    shape_t shape;
    std::string bytes;
  };

  template <class U>
  static std::string to_bytes(const std::vector<U>& v) {
    std::string s(v.size() * sizeof(U), '\0');
    if (!v.empty()) std::memcpy(s.data(), v.data(), s.size());
    return s;
  }

  safetensors_writer& add_bytes(const std::string& name, safetensors_dtype dtype, const shape_t& shape,
                                std::string bytes) {
    MSCL_CHECK(!name.empty(), value_error, "safetensors_writer::add: empty tensor name");
    MSCL_CHECK(name != "__metadata__", value_error,
               "safetensors_writer::add: '__metadata__' is reserved for the metadata map, not a tensor name");
    MSCL_CHECK(!entries_.count(name), value_error,
               "safetensors_writer::add: tensor '" << name << "' was already added");
    detail::st_json_string(name, "safetensors_writer::add", "tensor name '" + name + "'");
    entries_.emplace(name, entry{dtype, shape, std::move(bytes)});
    return *this;
  }

  std::map<std::string, entry> entries_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace mscl::io
