// A JobService (and WorkerService.ListWorkers) client for alignctl and tests: adds the bearer token and a deadline to every call, and turns
// grpc::Status into absl::Status. Thread-safe (the stub is).
#ifndef ALIGND_COORDINATOR_JOB_CLIENT_H_
#define ALIGND_COORDINATOR_JOB_CLIENT_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "proto/alignd.grpc.pb.h"

namespace alignd::coordinator {

class JobClient {
 public:
  struct Options {
    std::string address;                         // host:port of the coordinator
    std::string token;                           // bearer token; empty sends none
    absl::Duration timeout = absl::Seconds(30);  // deadline of each call
    // TLS: PEM CA bundle to verify the coordinator with; empty means plaintext.
    std::string tls_ca_file;
    // Mutual TLS: the client's PEM certificate chain and key (both or neither; need tls_ca_file).
    std::string tls_cert_file;
    std::string tls_key_file;
    // Name expected in the coordinator's certificate, when it differs from the host in `address`.
    std::string tls_server_name;
  };

  // Opens a channel to `options.address` (TLS when tls_ca_file is set). FAILED_PRECONDITION when a token would be
  // sent in plaintext to a non-loopback address; INVALID_ARGUMENT for an empty address, a non-positive timeout or
  // inconsistent TLS files; the file's error when one cannot be read.
  static absl::StatusOr<std::unique_ptr<JobClient>> Connect(const Options& options);

  // Stubs may be fakes (tests). Without a worker stub, ListWorkers is FAILED_PRECONDITION.
  JobClient(std::unique_ptr<v1::JobService::StubInterface> stub, std::string token, absl::Duration timeout,
            std::unique_ptr<v1::WorkerService::StubInterface> worker_stub = nullptr)
      : stub_(std::move(stub)), worker_stub_(std::move(worker_stub)), token_(std::move(token)), timeout_(timeout) {}

  absl::StatusOr<v1::Job> Submit(const std::string& spec_yaml, const std::string& request_id);
  absl::StatusOr<v1::Job> Get(const std::string& id);
  absl::StatusOr<v1::ListJobsResponse> List(const std::vector<v1::JobState>& states, uint32_t page_size,
                                            const std::string& page_token);
  absl::StatusOr<v1::Job> Cancel(const std::string& id);
  // Streams the job's events to `on_event` until the job finishes (OK) or `timeout` passes (DEADLINE_EXCEEDED).
  // The per-call timeout does not apply: a job can run for days.
  absl::StatusOr<v1::ListWorkersResponse> ListWorkers();
  // With `past_only`, only the events recorded so far are sent, and the call ends after them.
  absl::Status Watch(const std::string& id, absl::Duration timeout,
                     const std::function<void(const v1::JobEvent&)>& on_event, bool past_only = false);

 private:
  void Prepare(grpc::ClientContext* context) const;

  std::unique_ptr<v1::JobService::StubInterface> stub_;
  std::unique_ptr<v1::WorkerService::StubInterface> worker_stub_;
  const std::string token_;
  const absl::Duration timeout_;
};

}  // namespace alignd::coordinator

#endif  // ALIGND_COORDINATOR_JOB_CLIENT_H_
