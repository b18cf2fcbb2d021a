// procpool's version.
#pragma once

#define PROCPOOL_VERSION_MAJOR 0
#define PROCPOOL_VERSION_MINOR 1
#define PROCPOOL_VERSION_PATCH 0
