// procpool-transcribe-server: an HTTP transcription service whose Azure AI Speech calls run in
// recycled procpool worker processes. The binary is also its own worker (self-exec).
#include <pthread.h>
#include <signal.h>
#include <procpool/worker.hpp>

#include <cstdio>
#include <exception>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "azure_transcription/server.hpp"

extern char** environ;

int main(int argc, char** argv) {
  // A worker: run azure.transcribe jobs (leaking, if the host asked us to simulate a leaky SDK).
  procpool::JobRegistry jobs =
      procpool::azure::make_worker_registry(procpool::azure::simulate_leak_from_argv(argc, argv));
  if (auto rc = procpool::run_worker_if_requested(argc, argv, jobs)) return *rc;

  std::map<std::string, std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string kv = *e;
    if (auto eq = kv.find('='); eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  procpool::azure::ServerOptions options;
  try {
    options =
        procpool::azure::parse_server_options(std::vector<std::string>(argv + 1, argv + argc), env);
  } catch (const procpool::azure::HelpRequested&) {
    std::fputs(procpool::azure::server_usage().c_str(), stdout);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "procpool-transcribe-server: %s\n", e.what());
    return 2;
  }

  // SIGTERM/SIGINT are blocked in every thread (the mask is inherited by the pool's and the HTTP
  // server's threads) and taken by sigwait on a dedicated thread. SIGUSR1 wakes that thread at a
  // normal exit.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  try {
    procpool::azure::TranscribeServer server(options);
    std::printf("listening on http://%s:%d\n", options.host.c_str(), server.port());
    std::fflush(stdout);
    std::thread waiter([&server, signals] {
      int sig = 0;
      sigwait(&signals, &sig);
      if (sig != SIGUSR1) {
        std::fprintf(stderr, "procpool-transcribe-server: %s: draining\n",
                     sig == SIGTERM ? "SIGTERM" : "SIGINT");
      }
      server.stop();  // stop accepting; in-flight requests still complete
    });
    server.run();
    pthread_kill(waiter.native_handle(), SIGUSR1);  // harmless if the waiter already returned
    waiter.join();
    server.shutdown();  // drain the pool, reap the workers
    std::fprintf(stderr, "procpool-transcribe-server: stopped\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "procpool-transcribe-server: %s\n", e.what());
    return 1;
  }
  return 0;
}
