// procpool-azure-worker: a dedicated worker executable (PoolOptions::worker_command) that runs
// azure.transcribe, configured from the AZURE_SPEECH_* environment it inherits from the host.
#include <procpool/worker.hpp>

#include "azure_transcription/job.hpp"

int main(int argc, char** argv) {
  procpool::JobRegistry jobs;
  procpool::azure::register_transcribe_job(jobs);
  return procpool::worker_main(argc, argv, jobs);
}
