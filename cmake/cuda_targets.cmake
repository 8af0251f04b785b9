# CUDA tests and benchmarks (MSCL_WITH_CUDA=ON; included from the top-level CMakeLists.txt).
# They link mscl + mscl::cuda only (no oneDNN/JPEG/FFmpeg), so the binaries also run on GPU
# machines that lack those libraries (scripts/gpu-check.sh --run-only).

if(MSCL_BUILD_TESTS)
  find_package(Catch2 REQUIRED)
  include(Catch)
  # The shared Catch2 main, compiled by the C++ compiler without the project's -march flags.
  add_library(mscl_cuda_catch_main STATIC ${PROJECT_SOURCE_DIR}/tests/catch_main.cpp)
  target_link_libraries(mscl_cuda_catch_main PUBLIC Catch2::Catch2 mscl)
  file(GLOB MSCL_CUDA_TESTS CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/tests/cuda/*_test.cu)
  foreach(src ${MSCL_CUDA_TESTS})
    get_filename_component(name ${src} NAME_WE)
    add_executable(${name} ${src})
    target_link_libraries(${name} PRIVATE mscl_cuda_catch_main mscl_cuda)
    # Without a GPU each test prints MSCL_CUDA_SKIP and ctest reports it as skipped.
    catch_discover_tests(${name} TEST_PREFIX "${name}:" EXTRA_ARGS --warn NoTests
                         PROPERTIES TIMEOUT 600 SKIP_REGULAR_EXPRESSION "MSCL_CUDA_SKIP" LABELS cuda)
  endforeach()
  # The data-parallel machinery on device tensors with a real NCCL communicator (one rank), only
  # with MSCL_WITH_NCCL. It lives in tests/cuda/nccl/, outside the glob above, so that CUDA builds
  # without NCCL (CI) compile no extra nvcc unit. scripts/gpu-check.sh builds and runs it.
  if(TARGET mscl_nccl)
    set(_mscl_nccl_test_src ${PROJECT_SOURCE_DIR}/tests/cuda/nccl/cuda_nccl_test.cu)
    # As tests/CMakeLists.txt does for the other tests: a ";" in a name splits the ctest entry.
    file(STRINGS ${_mscl_nccl_test_src} _mscl_semicolon_names REGEX "TEST_CASE\\(\"[^\"]*;")
    if(_mscl_semicolon_names)
      message(FATAL_ERROR "${_mscl_nccl_test_src}: a TEST_CASE name contains ';' (ctest would split it into two "
                          "entries): ${_mscl_semicolon_names}")
    endif()
    add_executable(cuda_nccl_test ${_mscl_nccl_test_src})
    target_link_libraries(cuda_nccl_test PRIVATE mscl_cuda_catch_main mscl_cuda mscl_nccl)
    catch_discover_tests(cuda_nccl_test TEST_PREFIX "cuda_nccl_test:" EXTRA_ARGS --warn NoTests TEST_LIST cuda_nccl_test_TESTS
                         PROPERTIES TIMEOUT 600 SKIP_REGULAR_EXPRESSION "MSCL_CUDA_SKIP" LABELS cuda)
    # Labels "cuda;nccl": Catch's PROPERTIES flattens a list value (it would write "LABELS cuda nccl",
    # which drops the second), so a ctest include that runs after the discovered tests are added
    # sets both.
    file(WRITE ${PROJECT_BINARY_DIR}/cuda_nccl_test_labels.cmake
         "if(DEFINED cuda_nccl_test_TESTS)\n  set_tests_properties(\${cuda_nccl_test_TESTS} PROPERTIES LABELS \"cuda;nccl\")\nendif()\n")
    set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES ${PROJECT_BINARY_DIR}/cuda_nccl_test_labels.cmake)
  endif()
endif()

if(MSCL_BUILD_BENCHMARKS)
  file(GLOB MSCL_CUDA_BENCHES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/benchmarks/cuda_*.cu)
  foreach(src ${MSCL_CUDA_BENCHES})
    get_filename_component(name ${src} NAME_WE)
    add_executable(${name} ${src})
    target_link_libraries(${name} PRIVATE mscl_cuda)
    set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/benchmarks)
  endforeach()
endif()

# cuda_tvl1_prog times the CPU TV-L1 as its reference: give that host code its AVX2 paths (every
# x86-64 GPU host of this decade has AVX2; without it the ratio would be against scalar CPU code).
if(TARGET cuda_tvl1_prog AND CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64")
  target_compile_options(cuda_tvl1_prog PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-mavx2,-mfma>)
endif()
