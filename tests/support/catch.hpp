// Catch2 2.x (Debian 12) or 3.x, whichever the build found.
#pragma once

#if PROCPOOL_CATCH_MAJOR >= 3
#include <catch2/catch_all.hpp>
#else
#include <catch2/catch.hpp>
#endif
