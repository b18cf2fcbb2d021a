// azure-speech-mock: the loopback mock as a program, for manual runs and for tests that start
// the host service. Prints "listening on http://127.0.0.1:PORT" and serves until SIGINT/SIGTERM.
#include <signal.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "mock_server.hpp"

int main(int argc, char** argv) {
  procpool::azure_mock::MockOptions options;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--key") == 0 && i + 1 < argc) {
      options.key = argv[++i];
    } else {
      std::fprintf(stderr, "usage: %s [--key KEY]\n", argv[0]);
      return 2;
    }
  }
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);  // before the server's threads start
  procpool::azure_mock::MockServer mock(options);
  std::printf("listening on %s\n", mock.base_url().c_str());
  std::fflush(stdout);
  int signal = 0;
  sigwait(&signals, &signal);
  mock.stop();
  return 0;
}
