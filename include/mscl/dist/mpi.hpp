/// \file mpi.hpp
/// \brief MPI transport for data-parallel training on CPU processes (MSCL_WITH_MPI, link
///        `mscl::mpi`): the process-wide MPI environment and `mpi_communicator`, whose every
///        collective runs as a non-blocking request polled against a watchdog deadline.
///
/// Why a watchdog: a blocking MPI_Allreduce whose peer died or hangs (stuck I/O, an endless
/// loop, a launcher that does not kill the job) never returns. Here each collective is started
/// with MPI_I* and polled with MPI_Testall; past the deadline the rank prints which operation of
/// which rank timed out and calls MPI_Abort, which ends every process of the job. mpirun itself
/// also ends the job when a process is killed; the watchdog covers the cases it does not see.
/// Polling spins briefly and then sleeps 50 µs between tests, so a waiting rank leaves its
/// core to the others (the default blocking MPI calls of Open MPI spin at 100 %).
///
/// Usage: `auto comm = std::make_shared<dist::mpi_communicator>(&argc, &argv);` — MPI is
/// initialised on first use (MPI_THREAD_FUNNELED: only the main thread calls MPI; OpenMP
/// threads never do) and finalised at exit when this library initialised it.
#pragma once
#if !defined(MSCL_WITH_MPI)
#error "mscl/dist/mpi.hpp needs MPI: configure with -DMSCL_WITH_MPI=ON and link mscl::mpi (apt install libopenmpi-dev openmpi-bin)"
#endif
#include <mpi.h>

#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "communicator.hpp"

namespace mscl::dist {

/// MPI_Init_thread once per process; MPI_Finalize at exit if we initialised it.
class mpi_environment {
 public:
  static mpi_environment& instance(int* argc = nullptr, char*** argv = nullptr) {
    static mpi_environment env(argc, argv);
    return env;
  }
  ~mpi_environment() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owns_ && !finalized) MPI_Finalize();
  }
  mpi_environment(const mpi_environment&) = delete;
  mpi_environment& operator=(const mpi_environment&) = delete;

 private:
  mpi_environment(int* argc, char*** argv) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      int provided = 0;
      MSCL_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) == MPI_SUCCESS, error,
                 "dist::mpi_environment: MPI_Init_thread failed");
      owns_ = true;
    }
  }
  bool owns_ = false;
};

/// Default watchdog deadline: $MSCL_DIST_TIMEOUT seconds when set, else 300 s (long enough for
/// rank 0 to write a checkpoint while the others wait at the next collective).
inline double default_timeout_seconds() {
  if (const char* s = std::getenv("MSCL_DIST_TIMEOUT")) {
    char* end = nullptr;
    const double v = std::strtod(s, &end);
    MSCL_CHECK(end != s && v > 0, config_error, "MSCL_DIST_TIMEOUT must be a positive number of seconds, got '" << s << "'");
    return v;
  }
  return 300.0;
}

class mpi_communicator final : public communicator {
 public:
  /// Initialises MPI if needed and works on a duplicate of `comm` (so our traffic never mixes
  /// with the application's). timeout_s <= 0: default_timeout_seconds().
  explicit mpi_communicator(int* argc = nullptr, char*** argv = nullptr, double timeout_s = 0,
                            MPI_Comm comm = MPI_COMM_WORLD) {
    mpi_environment::instance(argc, argv);
    MPI_Comm_dup(comm, &comm_);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    timeout_ = timeout_s > 0 ? timeout_s : default_timeout_seconds();
  }
  ~mpi_communicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
  }
  mpi_communicator(const mpi_communicator&) = delete;
  mpi_communicator& operator=(const mpi_communicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return "mpi"; }
  double timeout_seconds() const override { return timeout_; }
  void set_timeout_seconds(double s) {
    MSCL_CHECK(s > 0, value_error, "dist::mpi_communicator: timeout must be positive, got " << s);
    timeout_ = s;
  }
  MPI_Comm native() const { return comm_; }

  [[noreturn]] void abort(const std::string& message, int code) override {
    std::fprintf(stderr, "%s\n", message.c_str());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);  // MPI_Abort does not return; this keeps [[noreturn]] honest
  }

 protected:
  void do_all_reduce_sum(void* data, std::size_t n, dtype t, const char* what) override {
    MPI_Request r;
    MPI_Iallreduce(MPI_IN_PLACE, data, count(n, what), type(t), MPI_SUM, comm_, &r);
    wait(&r, 1, what);
  }
  void do_all_gather(const void* in, std::size_t n, void* out, dtype t, const char* what) override {
    MPI_Request r;
    MPI_Iallgather(in, count(n, what), type(t), out, count(n, what), type(t), comm_, &r);
    wait(&r, 1, what);
  }
  void do_broadcast(void* data, std::size_t n, dtype t, int root, const char* what) override {
    MPI_Request r;
    MPI_Ibcast(data, count(n, what), type(t), root, comm_, &r);
    wait(&r, 1, what);
  }
  void do_start_all_reduce_sum(void* data, std::size_t n, dtype t, const char* what) override {
    pending_.emplace_back();
    MPI_Iallreduce(MPI_IN_PLACE, data, count(n, what), type(t), MPI_SUM, comm_, &pending_.back());
  }
  void do_wait_all(const char* what) override {
    if (pending_.empty()) return;
    wait(pending_.data(), int(pending_.size()), what);
    pending_.clear();
  }
  void do_poll() override {
    if (pending_.empty()) return;
    int done = 0;  // completes nothing it does not report; wait_all still frees the requests
    MPI_Testall(int(pending_.size()), pending_.data(), &done, MPI_STATUSES_IGNORE);
    if (done) pending_.clear();
  }
  void do_barrier(const char* what) override {
    MPI_Request r;
    MPI_Ibarrier(comm_, &r);
    wait(&r, 1, what);
  }

 private:
  static MPI_Datatype type(dtype t) {
    switch (t) {
      case dtype::f32: return MPI_FLOAT;
      case dtype::f64: return MPI_DOUBLE;
      default: return MPI_INT64_T;
    }
  }
  static int count(std::size_t n, const char* what) {
    MSCL_CHECK(n <= std::size_t(INT_MAX), value_error,
               "dist::mpi_communicator: " << what << " of " << n << " elements exceeds MPI's int count; split it");
    return int(n);
  }
  /// Polls the requests until all completed or the deadline passed (then aborts the job).
  void wait(MPI_Request* reqs, int n, const char* what) {
    const auto start = std::chrono::steady_clock::now();
    const auto deadline = start + std::chrono::duration<double>(timeout_);
    long polls = 0;
    for (;;) {
      int done = 0;
      MPI_Testall(n, reqs, &done, MPI_STATUSES_IGNORE);
      if (done) return;
      if (++polls > 2000) {  // ~the latency of a local collective: after it, stop spinning
        if (std::chrono::steady_clock::now() > deadline) break;
        std::this_thread::sleep_for(std::chrono::microseconds(50));
      }
    }
    char msg[512];
    std::snprintf(msg, sizeof msg,
                  "mscl::dist watchdog: rank %d of %d: '%s' did not complete within %.1f s; a peer process has died "
                  "or stopped responding (see the other ranks' messages). Aborting the job (MSCL_DIST_TIMEOUT "
                  "sets the deadline).",
                  rank_, size_, what, timeout_);
    abort(msg, 3);
  }

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  double timeout_ = 300;
  std::vector<MPI_Request> pending_;
};

}  // namespace mscl::dist
