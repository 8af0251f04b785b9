#include <catch2/catch.hpp>
#include <mscl/mscl.hpp>
using namespace mscl;
TEST_CASE("placeholder compiles", "[core]") { auto t = tensor<float>::ones({2, 3}); REQUIRE(t.numel() == 6); }
