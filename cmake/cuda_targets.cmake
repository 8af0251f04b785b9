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
