// Catch2 2.x / 3.x differences the Azure tests need.
#pragma once

#include <string>

#include "catch.hpp"

namespace procpool::azure_test {

#if PROCPOOL_CATCH_MAJOR >= 3
inline auto Has(const std::string& text) {
  return Catch::Matchers::ContainsSubstring(text);
}
#else
inline auto Has(const std::string& text) {
  return Catch::Matchers::Contains(text);
}
#endif

}  // namespace procpool::azure_test
