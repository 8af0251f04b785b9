// The one Catch2 main shared by every test executable; prints the library version first.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <iostream>
#include <mscl/config.hpp>

int main(int argc, char* argv[]) {
  // stderr: ctest discovery reads test names from stdout.
  std::cerr << "mscl " << mscl::version_string << "\n";
  return Catch::Session().run(argc, argv);
}
