// A tiny program using only the core target: builds a narrow R3D and runs one clip through it.
#include <iostream>
#include <mscl/mscl.hpp>

int main() {
  auto net = mscl::models::r3d_tiny<float>(/*num_classes=*/5);
  auto clip = mscl::tensor<float>::ones({1, 3, 4, 16, 16});
  mscl::no_grad guard;
  net.eval();
  auto logits = net.forward(clip);
  if (logits.shape() != mscl::shape_t{1, 5}) return 1;
  std::cout << "consumer ok " << mscl::version_string << "\n";
  return 0;
}
