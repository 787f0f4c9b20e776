#include <iostream>
#include "mla/mla.hpp"
int main() {
  for (const auto& b : mla::list_backends()) std::cout << b.name << " " << b.availability.available << " " << b.availability.reason << "\n";
}
