// Symbol visibility for procpool's public API.
#pragma once

#if defined(PROCPOOL_SHARED)
#if defined(PROCPOOL_BUILDING)
#define PROCPOOL_API __attribute__((visibility("default")))
#else
#define PROCPOOL_API
#endif
#else
#define PROCPOOL_API
#endif
