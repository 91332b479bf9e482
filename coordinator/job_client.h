// A JobService (and WorkerService.ListWorkers) client for alignctl and tests: adds the bearer token and a deadline to
// every call, and turns grpc::Status into absl::Status (codes and messages as the coordinator sent them).
//
// Every call may also return UNAUTHENTICATED (no token, or one the coordinator does not know), UNAVAILABLE (the
// coordinator cannot be reached) and DEADLINE_EXCEEDED (the call's deadline passed first). Every call but Watch
// has a deadline of `timeout` (Options::timeout) from when it starts.
//
// Thread-safe: calls may run from several threads at once (each has its own context; the stubs are thread-safe).
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

  // Stubs may be fakes (tests); `timeout` is each call's deadline (Options::timeout). Without a worker stub,
  // ListWorkers is FAILED_PRECONDITION.
  JobClient(std::unique_ptr<v1::JobService::StubInterface> stub, std::string token, absl::Duration timeout,
            std::unique_ptr<v1::WorkerService::StubInterface> worker_stub = nullptr)
      : stub_(std::move(stub)), worker_stub_(std::move(worker_stub)), token_(std::move(token)), timeout_(timeout) {}

  // Submits `spec_yaml` and returns the PENDING job. INVALID_ARGUMENT naming the field for a spec that does not
  // validate or a request id over the coordinator's limit (128 bytes by default); PERMISSION_DENIED for a worker
  // token. A non-empty `request_id` makes retries safe: sent again by the same caller with the same spec it returns
  // the job made the first time, with another spec ALREADY_EXISTS.
  absl::StatusOr<v1::Job> Submit(const std::string& spec_yaml, const std::string& request_id);
  // The job `id`. INVALID_ARGUMENT for an empty id; NOT_FOUND for an unknown one; PERMISSION_DENIED for another
  // user's job (admins see every job) and for a worker token.
  absl::StatusOr<v1::Job> Get(const std::string& id);
  // One page of the caller's jobs (every job for admins), oldest first, only those in `states` unless it is empty.
  // `page_size` 0 means the coordinator's default page size; more than its maximum is clamped. `page_token` is
  // empty for the first page, then the previous page's next_page_token (empty on the last page). INVALID_ARGUMENT
  // for a token the coordinator did not hand out or an unspecified state; PERMISSION_DENIED for a worker token.
  absl::StatusOr<v1::ListJobsResponse> List(const std::vector<v1::JobState>& states, uint32_t page_size,
                                            const std::string& page_token);
  // Cancels an unfinished job and returns it CANCELLED (its workers are told to stop at the next scheduling pass).
  // INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED as Get; FAILED_PRECONDITION when the job has already finished.
  absl::StatusOr<v1::Job> Cancel(const std::string& id);
  // The registered workers: roles, device, address, the job and role each runs, lease expiry. Any authenticated
  // token may list them. FAILED_PRECONDITION, without calling, when this client was built without a worker stub.
  absl::StatusOr<v1::ListWorkersResponse> ListWorkers();
  // Streams the job's events, every past one first, to `on_event` (called on this thread, in order) until the job
  // finishes (OK after its final event) or `timeout` passes (DEADLINE_EXCEEDED). With `past_only`, only the events
  // recorded so far are sent, and the call ends after them (OK). The per-call timeout does not apply: a job can run
  // for days. INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED as Get; CANCELLED or UNAVAILABLE when the coordinator
  // shuts down meanwhile.
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
