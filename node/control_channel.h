// A node's side of the coordinator's control plane (alignd.v1.WorkerService): registration, the Control stream and
// the heartbeats that hold the node's lease.
//
// The channel registers (as a new worker each time: an old id may name another worker after a coordinator restart),
// retrying with backoff until the coordinator answers, then opens the Control stream under the lease it got. On the
// stream it writes what Send queued (results and progress, in order) and, when nothing was queued for a heartbeat
// period, a heartbeat; what it reads it hands to the callbacks. When the stream ends (broken, closed by the
// coordinator, or a stale-lease message), the coordinator has ended the lease and restarts whatever gang the node was
// part of: the channel calls on_lease_lost (which may block until the node is free to take work), waits
// reconnect_delay and registers again. Messages queued but not written to a broken stream (heartbeats aside) are
// written to the next one.
//
// Torch-free: the stub comes in as an interface (GrpcControlStub below, a fake in tests) and the time as a Clock.
#ifndef ALIGND_NODE_CONTROL_CHANNEL_H_
#define ALIGND_NODE_CONTROL_CHANNEL_H_

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "node/clock.h"
#include "proto/alignd.pb.h"

namespace grpc {
class Channel;
}  // namespace grpc

namespace alignd::node {

// One Control stream.
class ControlStream {
 public:
  virtual ~ControlStream() = default;
  // Blocks for the coordinator's next message; false once the stream has ended (closed, broken or cancelled).
  virtual bool Read(v1::CoordinatorMessage* message) = 0;
  // false when the stream is broken. One writer at a time, concurrent with one reader.
  virtual bool Write(const v1::WorkerMessage& message) = 0;
  // Ends the stream from this side: blocked and later Read/Write calls return false. Thread-safe, idempotent.
  virtual void Cancel() = 0;
  // The stream's final status; call once, after Read has returned false.
  virtual absl::Status Finish() = 0;
};

// The WorkerService calls a node makes. Thread-safe.
class ControlStub {
 public:
  virtual ~ControlStub() = default;
  // The coordinator's answer, or the call's error (UNAVAILABLE when it cannot be reached).
  virtual absl::StatusOr<v1::RegisterWorkerResponse> Register(const v1::RegisterWorkerRequest& request) = 0;
  // Opens a Control stream; never null (a stream that cannot open fails its first Read/Write).
  virtual std::unique_ptr<ControlStream> OpenControl() = 0;
};

// ControlStub over gRPC: every call carries `token` as a bearer token (none when empty); Register has a deadline of
// `register_deadline`, the Control stream one of 30 days (it lives as long as the lease).
std::unique_ptr<ControlStub> NewGrpcControlStub(std::shared_ptr<grpc::Channel> channel, std::string token,
                                                absl::Duration register_deadline = absl::Seconds(10));

class ControlChannel {
 public:
  struct Options {
    v1::WorkerInfo worker;                                     // what the node registers as (roles, device, address)
    std::string name;                                          // for logs: the node's address
    absl::Duration heartbeat = absl::Milliseconds(500);        // > 0: a heartbeat after this long without a message
    absl::Duration register_backoff = absl::Seconds(1);        // > 0: wait after the first failed Register
    absl::Duration max_register_backoff = absl::Seconds(1);    // >= register_backoff: doubling stops here
    absl::Duration reconnect_delay = absl::Milliseconds(200);  // >= 0: wait after a stream ended
  };
  // Called on the channel's own threads, with no lock of the channel held; they may call Send.
  struct Callbacks {
    std::function<void(const std::string& worker_id, const std::string& credential_key)> on_registered;
    std::function<void(const v1::Assignment&)> on_assignment;
    std::function<void(const std::string& job_id)> on_cancel;
    // The stream ended: cancel everything the node holds. The channel registers again once this returns.
    std::function<void()> on_lease_lost;
  };

  // INVALID_ARGUMENT for a null stub or clock, or durations outside their bounds. Does not start: see Start.
  static absl::StatusOr<std::unique_ptr<ControlChannel>> Create(std::shared_ptr<ControlStub> stub,
                                                                std::shared_ptr<Clock> clock, Options options,
                                                                Callbacks callbacks);
  ~ControlChannel();  // Stop()
  ControlChannel(const ControlChannel&) = delete;
  ControlChannel& operator=(const ControlChannel&) = delete;

  // Starts registering on a thread of its own. Call once.
  void Start();
  // Ends the stream, stops retrying and joins the threads. Idempotent; the callbacks are not called after it returns.
  void Stop();
  // Queues `message` for the stream (the lease id is filled in when it is written). Thread-safe.
  void Send(v1::WorkerMessage message);
  // The id of the last registration ("" before the first). Thread-safe.
  std::string worker_id() const;

 private:
  ControlChannel(std::shared_ptr<ControlStub> stub, std::shared_ptr<Clock> clock, Options options, Callbacks callbacks);
  void Loop();
  // Waits on the clock until `deadline` or Stop; false when stopping.
  bool WaitUntil(absl::Time deadline);
  void RunStream(const std::string& lease);
  void ReadStream(ControlStream& stream);

  const std::shared_ptr<ControlStub> stub_;
  const std::shared_ptr<Clock> clock_;
  const Options options_;
  const Callbacks callbacks_;

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool reader_done_ ABSL_GUARDED_BY(mu_) = false;
  std::string worker_id_ ABSL_GUARDED_BY(mu_);
  std::deque<v1::WorkerMessage> outbox_ ABSL_GUARDED_BY(mu_);
  ControlStream* stream_ ABSL_GUARDED_BY(mu_) = nullptr;  // the open stream, for Stop to cancel
  std::thread thread_;
};

}  // namespace alignd::node

#endif  // ALIGND_NODE_CONTROL_CHANNEL_H_
