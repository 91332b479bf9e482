#include "node/control_channel.h"

#include <glog/logging.h>  // torch-free: glog itself, not common/base/logging.h
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/rpc/grpc_status.h"
#include "proto/alignd.grpc.pb.h"

namespace alignd::node {
namespace {

class GrpcControlStream final : public ControlStream {
 public:
  explicit GrpcControlStream(v1::WorkerService::Stub& stub, const std::string& token) {
    if (!token.empty()) context_.AddMetadata("authorization", absl::StrCat("Bearer ", token));
    // The stream lives as long as the lease; its deadline only bounds a stream nobody closes.
    context_.set_deadline(std::chrono::system_clock::now() + std::chrono::hours(24 * 30));
    stream_ = stub.Control(&context_);
  }
  bool Read(v1::CoordinatorMessage* message) override { return stream_->Read(message); }
  bool Write(const v1::WorkerMessage& message) override { return stream_->Write(message); }
  void Cancel() override { context_.TryCancel(); }
  absl::Status Finish() override { return FromGrpcStatus(stream_->Finish()); }

 private:
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::WorkerMessage, v1::CoordinatorMessage>> stream_;
};

class GrpcControlStub final : public ControlStub {
 public:
  GrpcControlStub(std::shared_ptr<grpc::Channel> channel, std::string token, absl::Duration register_deadline)
      : stub_(v1::WorkerService::NewStub(std::move(channel))),
        token_(std::move(token)),
        register_deadline_(register_deadline) {}

  absl::StatusOr<v1::RegisterWorkerResponse> Register(const v1::RegisterWorkerRequest& request) override {
    grpc::ClientContext context;
    if (!token_.empty()) context.AddMetadata("authorization", absl::StrCat("Bearer ", token_));
    context.set_deadline(absl::ToChronoTime(absl::Now() + register_deadline_));
    v1::RegisterWorkerResponse response;
    grpc::Status s = stub_->Register(&context, request, &response);
    if (!s.ok()) return FromGrpcStatus(s);
    return response;
  }
  std::unique_ptr<ControlStream> OpenControl() override { return std::make_unique<GrpcControlStream>(*stub_, token_); }

 private:
  std::unique_ptr<v1::WorkerService::Stub> stub_;
  const std::string token_;
  const absl::Duration register_deadline_;
};

}  // namespace

std::unique_ptr<ControlStub> NewGrpcControlStub(std::shared_ptr<grpc::Channel> channel, std::string token,
                                                absl::Duration register_deadline) {
  return std::make_unique<GrpcControlStub>(std::move(channel), std::move(token), register_deadline);
}

absl::StatusOr<std::unique_ptr<ControlChannel>> ControlChannel::Create(std::shared_ptr<ControlStub> stub,
                                                                       std::shared_ptr<Clock> clock, Options options,
                                                                       Callbacks callbacks) {
  if (!stub || !clock) return absl::InvalidArgumentError("control channel: a stub and a clock are required");
  if (options.heartbeat <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("control channel: heartbeat must be > 0, not ", absl::FormatDuration(options.heartbeat)));
  }
  if (options.register_backoff <= absl::ZeroDuration() || options.max_register_backoff < options.register_backoff) {
    return absl::InvalidArgumentError(
        absl::StrCat("control channel: register_backoff ", absl::FormatDuration(options.register_backoff),
                     " must be > 0 and <= max_register_backoff ", absl::FormatDuration(options.max_register_backoff)));
  }
  if (options.reconnect_delay < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("control channel: reconnect_delay must be >= 0");
  }
  return std::unique_ptr<ControlChannel>(
      new ControlChannel(std::move(stub), std::move(clock), std::move(options), std::move(callbacks)));
}

ControlChannel::ControlChannel(std::shared_ptr<ControlStub> stub, std::shared_ptr<Clock> clock, Options options,
                               Callbacks callbacks)
    : stub_(std::move(stub)),
      clock_(std::move(clock)),
      options_(std::move(options)),
      callbacks_(std::move(callbacks)) {}

ControlChannel::~ControlChannel() { Stop(); }

void ControlChannel::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void ControlChannel::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    if (stream_) stream_->Cancel();
  }
  if (thread_.joinable()) thread_.join();
}

void ControlChannel::Send(v1::WorkerMessage message) {
  absl::MutexLock lock(&mu_);
  outbox_.push_back(std::move(message));
}

std::string ControlChannel::worker_id() const {
  absl::MutexLock lock(&mu_);
  return worker_id_;
}

bool ControlChannel::WaitUntil(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  clock_->AwaitWithDeadline(mu_, absl::Condition(&stopping_), deadline);
  return !stopping_;
}

void ControlChannel::Loop() {
  absl::Duration backoff = options_.register_backoff;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
    }
    v1::RegisterWorkerRequest request;
    *request.mutable_worker() = options_.worker;
    absl::StatusOr<v1::RegisterWorkerResponse> registered = stub_->Register(request);
    if (!registered.ok()) {
      LOG(WARNING) << "worker " << options_.name << ": registering: " << registered.status() << " (retrying in "
                   << backoff << ")";
      if (!WaitUntil(clock_->Now() + backoff)) return;
      backoff = std::min(backoff * 2, options_.max_register_backoff);
      continue;
    }
    backoff = options_.register_backoff;
    {
      absl::MutexLock lock(&mu_);
      worker_id_ = registered->worker_id();
    }
    LOG(INFO) << "worker " << options_.name << " registered as " << registered->worker_id();
    if (callbacks_.on_registered) callbacks_.on_registered(registered->worker_id(), registered->credential_key());
    RunStream(registered->lease_id());
    if (callbacks_.on_lease_lost) callbacks_.on_lease_lost();
    if (!WaitUntil(clock_->Now() + options_.reconnect_delay)) return;
  }
}

void ControlChannel::ReadStream(ControlStream& stream) {
  v1::CoordinatorMessage message;
  while (stream.Read(&message)) {
    if (message.has_assignment()) {
      if (callbacks_.on_assignment) callbacks_.on_assignment(message.assignment());
    } else if (message.body_case() == v1::CoordinatorMessage::kCancelJobId) {
      if (callbacks_.on_cancel) callbacks_.on_cancel(message.cancel_job_id());
    } else if (message.body_case() == v1::CoordinatorMessage::kStaleLease) {
      break;
    }
  }
  absl::MutexLock lock(&mu_);  // wakes the writer
  reader_done_ = true;
}

void ControlChannel::RunStream(const std::string& lease) {
  std::unique_ptr<ControlStream> stream = stub_->OpenControl();
  {
    absl::MutexLock lock(&mu_);
    stream_ = stream.get();
    reader_done_ = false;
    if (stopping_) stream->Cancel();
  }
  std::thread reader([this, &stream] { ReadStream(*stream); });
  bool first = true;
  while (true) {
    std::vector<v1::WorkerMessage> batch;
    {
      absl::MutexLock lock(&mu_);
      auto wake = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || reader_done_ || !outbox_.empty(); };
      if (!first) clock_->AwaitWithDeadline(mu_, absl::Condition(&wake), clock_->Now() + options_.heartbeat);
      if (stopping_ || reader_done_) break;
      while (!outbox_.empty()) {
        batch.push_back(std::move(outbox_.front()));
        outbox_.pop_front();
      }
    }
    first = false;
    if (batch.empty()) {
      v1::WorkerMessage beat;
      beat.mutable_heartbeat()->set_unix_ms(absl::ToUnixMillis(clock_->Now()));
      batch.push_back(std::move(beat));
    }
    size_t sent = 0;
    for (v1::WorkerMessage& m : batch) {
      m.set_lease_id(lease);
      if (!stream->Write(m)) break;
      ++sent;
    }
    if (sent < batch.size()) {  // keep what was not written (a result must not be lost) for the next stream
      absl::MutexLock lock(&mu_);
      for (size_t i = batch.size(); i > sent; --i) {
        if (!batch[i - 1].has_heartbeat()) outbox_.push_front(std::move(batch[i - 1]));
      }
      break;
    }
  }
  stream->Cancel();
  reader.join();
  absl::Status finished = stream->Finish();
  LOG(INFO) << "worker " << options_.name << ": control stream ended: " << finished;
  absl::MutexLock lock(&mu_);
  stream_ = nullptr;
}

}  // namespace alignd::node
