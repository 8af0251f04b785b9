/// \file atomic_file.hpp
/// \brief Crash-safe file replacement: write to a temporary file beside the target, fsync, rename
///        over the target, fsync the directory.
///
/// Checkpoints, safetensors exports and .npy files are all written through this so that a reader
/// never sees a half-written file: after a crash or a failed write the target holds either its old
/// content or the complete new one. The temporary lives in the target's own directory because
/// `rename(2)` is atomic only within one file system. On any failure the temporary is removed and
/// `mscl::io_error` names the target path and the failing system call (with `strerror(errno)`).
///
/// POSIX only (open/write/fsync/rename); mscl targets Linux.
#pragma once
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>

#include "../core/error.hpp"

namespace mscl::io {

namespace detail {

/// "dir" part of a path as the kernel resolves it ("." for a bare file name, "/" for "/x").
inline std::string parent_directory(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

inline std::string base_name(const std::string& path) {
  const auto slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

inline std::string errno_text(int err) { return std::string(std::strerror(err)); }

}  // namespace detail

/// One atomic replacement of `path`.
///
/// Usage: construct (creates the temporary), call `write()` any number of times, then `commit()`.
/// If the object is destroyed without a successful `commit()` (an exception in between, an early
/// return), the temporary is removed and the target is left untouched.
///
/// requires: the parent directory of `path` exists and is writable; `path` is not a directory.
/// ensures:  after `commit()` returns, `path` holds exactly the bytes written, the data and the
///           directory entry are on stable storage, and no temporary is left behind.
///           The new file gets mode 0666 & ~umask, like a file made by `fopen(path, "w")`.
class atomic_file {
 public:
  explicit atomic_file(std::string path) : path_(std::move(path)) {
    MSCL_CHECK(!path_.empty() && path_.back() != '/', io_error,
               "atomic_file: expected a file path, got '" << path_ << "'");
    const std::string dir = detail::parent_directory(path_);
    const std::string base = detail::base_name(path_);
    // O_EXCL on a name made of pid + a process-wide counter: unique among threads and processes,
    // and, unlike mkstemp, the mode goes through the umask, so the final file gets normal permissions.
    static std::atomic<std::uint64_t> counter{0};
    for (int attempt = 0; attempt < 100; ++attempt) {
      temp_ = dir + "/." + base + ".tmp." + std::to_string(::getpid()) + "." +
              std::to_string(counter.fetch_add(1));
      fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
      if (fd_ >= 0) return;
      if (errno != EEXIST) break;
    }
    const int err = errno;
    temp_.clear();
    MSCL_CHECK(false, io_error,
               "atomic_file: cannot create a temporary file in '" << dir << "' to write '" << path_
                                                                  << "': " << detail::errno_text(err));
  }

  atomic_file(const atomic_file&) = delete;
  atomic_file& operator=(const atomic_file&) = delete;

  ~atomic_file() { abandon(); }

  const std::string& path() const { return path_; }
  /// The temporary's path (empty once committed or abandoned); exposed for tests.
  const std::string& temp_path() const { return temp_; }
  /// Bytes written so far.
  std::uint64_t size() const { return written_; }

  /// Appends `n` bytes; retries short writes and EINTR.
  void write(const void* data, std::size_t n) {
    MSCL_CHECK(fd_ >= 0, io_error, "atomic_file::write: '" << path_ << "' is already committed or abandoned");
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      const ::ssize_t k = ::write(fd_, p, n);
      if (k < 0) {
        if (errno == EINTR) continue;
        fail("write", errno);
      }
      p += k;
      n -= std::size_t(k);
      written_ += std::uint64_t(k);
    }
  }
  void write(std::string_view bytes) { write(bytes.data(), bytes.size()); }

  /// fsync the data, close, rename over the target, fsync the directory.
  void commit() {
    MSCL_CHECK(fd_ >= 0, io_error, "atomic_file::commit: '" << path_ << "' is already committed or abandoned");
    while (::fsync(fd_) != 0) {
      if (errno != EINTR) fail("fsync", errno);
    }
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) fail("close", errno);
    if (::rename(temp_.c_str(), path_.c_str()) != 0) fail("rename", errno);
    temp_.clear();  // the temporary is now the target: nothing to clean up any more
    // The rename lives in the directory; without this fsync a crash may forget it.
    const std::string dir = detail::parent_directory(path_);
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    const int open_err = errno;
    MSCL_CHECK(dfd >= 0, io_error,
               "atomic_file::commit: wrote '" << path_ << "' but cannot open its directory '" << dir
                                              << "' to fsync it: " << detail::errno_text(open_err));
    int rc;
    while ((rc = ::fsync(dfd)) != 0 && errno == EINTR) {
    }
    const int err = errno;
    ::close(dfd);
    // Some file systems refuse fsync on directories with EINVAL; the rename is as durable as they allow.
    MSCL_CHECK(rc == 0 || err == EINVAL, io_error,
               "atomic_file::commit: wrote '" << path_ << "' but fsync of directory '" << dir
                                              << "' failed: " << detail::errno_text(err));
  }

  /// Drops the temporary without touching the target (idempotent, never throws).
  void abandon() noexcept {
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
    }
    if (!temp_.empty()) {
      ::unlink(temp_.c_str());
      temp_.clear();
    }
  }

 private:
  [[noreturn]] void fail(const char* what, int err) {
    abandon();
    ::mscl::detail::throw_error<io_error>("atomic_file: " + std::string(what) + " failed while writing '" + path_ +
                                  "': " + detail::errno_text(err));
  }

  std::string path_;
  std::string temp_;
  int fd_ = -1;
  std::uint64_t written_ = 0;
};

/// Atomically replaces `path` with `n` bytes from `data`.
inline void write_file_atomic(const std::string& path, const void* data, std::size_t n) {
  atomic_file f(path);
  f.write(data, n);
  f.commit();
}
inline void write_file_atomic(const std::string& path, std::string_view bytes) {
  write_file_atomic(path, bytes.data(), bytes.size());
}

/// Atomically replaces `path` with whatever `fill(atomic_file&)` writes; if `fill` throws, the
/// target is untouched, the temporary removed and the exception propagates unchanged.
template <class Fill>
auto write_file_atomic(const std::string& path, Fill&& fill)
    -> decltype(fill(std::declval<atomic_file&>()), void()) {
  atomic_file f(path);
  fill(f);
  f.commit();
}

}  // namespace mscl::io
