#include "learner/remote.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <future>
#include <iterator>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "collective/weight_broadcast.h"
#include "common/base/logging.h"  // last: LOG is glog's
#include "common/base/status.h"
#include "common/rpc/grpc_status.h"
#include "proto/alignd.grpc.pb.h"
#include "reward/score_proto.h"
#include "rollout/weight_update.h"

namespace alignd::learner {
namespace {

constexpr int kMaxMessageBytes = 256 << 20;

std::shared_ptr<grpc::Channel> Connect(const RemoteServices& services, const std::string& address) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetMaxSendMessageSize(kMaxMessageBytes);
  return grpc::CreateCustomChannel(address, services.channel ? services.channel : grpc::InsecureChannelCredentials(),
                                   args);
}

// A call's deadline and the job's credential.
void Prepare(grpc::ClientContext* context, const RemoteServices& services) {
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::milliseconds(absl::ToInt64Milliseconds(services.rpc_timeout)));
  if (!services.credential.empty()) context->AddMetadata("authorization", absl::StrCat("Bearer ", services.credential));
}

// The job's cancel, reaching the calls in `contexts` while the hook lives.
CancelSignal::Hook CancelOnSignal(const RemoteServices& services, std::vector<grpc::ClientContext*> contexts) {
  if (services.cancel == nullptr) return {};
  return services.cancel->OnCancel([contexts = std::move(contexts)] {
    for (grpc::ClientContext* c : contexts) c->TryCancel();
  });
}

// One call with a fresh context (Prepare), which the job's cancel cancels.
grpc::Status Call(const RemoteServices& services, const std::function<grpc::Status(grpc::ClientContext*)>& rpc) {
  if (services.cancel != nullptr && services.cancel->cancelled()) {
    return grpc::Status(grpc::StatusCode::CANCELLED, "the job was cancelled");
  }
  grpc::ClientContext context;
  Prepare(&context, services);
  CancelSignal::Hook hook = CancelOnSignal(services, {&context});
  return rpc(&context);  // a cancel since the check above has called TryCancel, which cancels the call as it starts
}

absl::Status Named(const grpc::Status& status, const std::string& what, const std::string& address) {
  absl::Status s = FromGrpcStatus(status);
  if (s.ok()) return s;
  // This job's own credential refused: the peer has moved on to another job or attempt (or its assignment has not
  // reached it): the gang has changed, which a restart mends. Not a configuration error.
  if (s.code() == absl::StatusCode::kPermissionDenied || s.code() == absl::StatusCode::kUnauthenticated) {
    return absl::UnavailableError(absl::StrCat(what, " on ", address, " refused this job's credential: ", s.message()));
  }
  return absl::Status(s.code(), absl::StrCat(what, " on ", address, ": ", s.message()));
}

// [begin, end) of chunk `c` when `n` items are split into `parts` contiguous chunks (the first n % parts get one more).
std::pair<size_t, size_t> Chunk(size_t n, size_t parts, size_t c) {
  const size_t base = n / parts, extra = n % parts;
  const size_t begin = c * base + std::min(c, extra);
  return {begin, begin + base + (c < extra ? 1 : 0)};
}

// Runs fn(i) for i in [0, n) on n threads and returns the first error.
absl::Status RunParallel(size_t n, const std::function<absl::Status(size_t)>& fn) {
  std::vector<std::future<absl::Status>> futures;
  for (size_t i = 0; i < n; ++i) futures.push_back(std::async(std::launch::async, fn, i));
  absl::Status first;
  for (auto& f : futures) {
    absl::Status s = f.get();
    if (first.ok() && !s.ok()) first = s;
  }
  return first;
}

// Runs `rpc` (one call, with a fresh context each time: see Call). Until the peer has answered once, UNAVAILABLE and
// PERMISSION_DENIED mean that its assignment has not reached it yet (a gang's members receive theirs moments apart,
// and a worker may still be leaving its previous job) and are retried with backoff for up to the arrival window,
// unless the job is cancelled meanwhile; afterwards they are failures.
grpc::Status CallPeer(std::atomic<bool>& answered, const RemoteServices& services,
                      const std::function<grpc::Status(grpc::ClientContext*)>& rpc) {
  const absl::Time end = absl::Now() + services.arrival_window;
  absl::Duration backoff = absl::Milliseconds(20);
  while (true) {
    grpc::Status s = Call(services, rpc);
    if (s.ok()) {
      answered = true;
      return s;
    }
    const bool early = !answered && (s.error_code() == grpc::StatusCode::UNAVAILABLE ||
                                     s.error_code() == grpc::StatusCode::PERMISSION_DENIED);
    if (!early || absl::Now() + backoff >= end) return s;
    if (services.cancel == nullptr) {
      absl::SleepFor(backoff);
    } else if (services.cancel->WaitFor(backoff)) {
      return grpc::Status(grpc::StatusCode::CANCELLED, "the job was cancelled");
    }
    backoff = std::min(backoff * 2, absl::Seconds(1));
  }
}

}  // namespace

// ---- RemoteGenerator ----

struct RemoteGenerator::Impl {
  RemoteServices services;
  std::vector<std::unique_ptr<v1::Rollout::Stub>> stubs;
  std::deque<std::atomic<bool>> answered;  // by stub
};

RemoteGenerator::RemoteGenerator(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RemoteGenerator::~RemoteGenerator() = default;

absl::StatusOr<std::unique_ptr<RemoteGenerator>> RemoteGenerator::Create(const RemoteServices& services) {
  if (services.rollout_addresses.empty()) return absl::InvalidArgumentError("no rollout worker addresses");
  auto impl = std::make_unique<Impl>();
  impl->services = services;
  for (const std::string& a : services.rollout_addresses)
    impl->stubs.push_back(v1::Rollout::NewStub(Connect(services, a)));
  impl->answered.resize(impl->stubs.size());
  return std::unique_ptr<RemoteGenerator>(new RemoteGenerator(std::move(impl)));
}

absl::StatusOr<std::vector<rollout::Sample>> RemoteGenerator::Generate(const std::vector<std::vector<int32_t>>& prompts,
                                                                       const rollout::SamplingParams& params) {
  if (prompts.empty()) return absl::InvalidArgumentError("no prompts");
  const size_t parts = std::min(prompts.size(), impl_->stubs.size());
  std::vector<std::vector<rollout::Sample>> results(parts);
  absl::Status status = RunParallel(parts, [&](size_t c) -> absl::Status {
    auto [begin, end] = Chunk(prompts.size(), parts, c);
    v1::GenerateRequest request;
    for (size_t i = begin; i < end; ++i) {
      request.add_prompt_token_ids()->mutable_ids()->Add(prompts[i].begin(), prompts[i].end());
    }
    v1::SamplingParams* sp = request.mutable_sampling();
    sp->set_temperature(static_cast<float>(params.temperature));
    sp->set_top_p(static_cast<float>(params.top_p));
    sp->set_top_k(static_cast<int32_t>(params.top_k));
    sp->set_max_new_tokens(static_cast<uint32_t>(params.max_new_tokens));
    sp->set_min_new_tokens(static_cast<uint32_t>(params.min_new_tokens));
    if (params.stop_token_ids)
      sp->mutable_stop_token_ids()->Add(params.stop_token_ids->begin(), params.stop_token_ids->end());
    for (const std::string& s : params.stop_strings) sp->add_stop_strings(s);
    sp->set_n(static_cast<uint32_t>(params.n));
    // Each worker's rows draw what they would draw on one worker: the same seed, their indices in the whole batch.
    sp->set_seed(params.seed);
    sp->set_first_prompt_index(static_cast<uint32_t>(params.first_prompt_index + static_cast<int64_t>(begin)));
    v1::GenerateResponse response;
    grpc::Status s = CallPeer(impl_->answered[c], impl_->services, [&](grpc::ClientContext* context) {
      response.Clear();
      return impl_->stubs[c]->Generate(context, request, &response);
    });
    if (!s.ok()) return Named(s, "Generate", impl_->services.rollout_addresses[c]);
    for (const v1::Sample& p : response.samples()) {
      if (p.prompt_index() >= end - begin || p.logprobs_size() != p.token_ids_size()) {
        return absl::DataLossError(absl::StrCat("Generate on ", impl_->services.rollout_addresses[c],
                                                ": a sample does not match the request"));
      }
      rollout::Sample out;
      out.prompt_index = static_cast<int64_t>(begin + p.prompt_index());
      out.sample_index = p.sample_index();
      out.token_ids.assign(p.token_ids().begin(), p.token_ids().end());
      out.text = p.text();
      out.logprobs.assign(p.logprobs().begin(), p.logprobs().end());
      out.sampling_logprobs.assign(p.sampling_logprobs().begin(), p.sampling_logprobs().end());
      out.finish_reason = p.finish_reason() == "stop" ? rollout::FinishReason::kStop : rollout::FinishReason::kLength;
      out.weight_version = p.weight_version();
      results[c].push_back(std::move(out));
    }
    if (results[c].size() != (end - begin) * static_cast<size_t>(params.n)) {
      return absl::DataLossError(absl::StrCat("Generate on ", impl_->services.rollout_addresses[c], ": ",
                                              results[c].size(), " samples for ", end - begin, " prompts x ",
                                              params.n));
    }
    return absl::OkStatus();
  });
  RETURN_IF_ERROR(status);
  std::vector<rollout::Sample> all;
  for (auto& r : results) std::move(r.begin(), r.end(), std::back_inserter(all));
  return all;
}

// ---- remote rewards ----

namespace {

class RemoteReward : public reward::Reward {
 public:
  RemoteReward(const RemoteServices& services, int64_t max_items)
      : services_(services), max_items_(static_cast<size_t>(max_items)) {
    for (const std::string& a : services.reward_addresses) stubs_.push_back(v1::Reward::NewStub(Connect(services, a)));
    answered_.resize(stubs_.size());
  }

  absl::StatusOr<std::vector<reward::ScoreResult>> Score(const std::vector<reward::ScoreInput>& inputs) override {
    const size_t n = inputs.size();
    std::vector<reward::ScoreResult> out(n);
    if (n == 0) return out;
    const size_t calls = (n + max_items_ - 1) / max_items_;
    // Calls go round-robin over the servers; each server's calls run one after another, servers in parallel.
    const size_t servers = std::min(calls, stubs_.size());
    RETURN_IF_ERROR(RunParallel(servers, [&](size_t server) -> absl::Status {
      for (size_t call = server; call < calls; call += servers) {
        const size_t begin = call * max_items_, end = std::min(n, begin + max_items_);
        const v1::ScoreRequest request = reward::ScoreRequestFor(inputs, begin, end);
        v1::ScoreResponse response;
        grpc::Status s = CallPeer(answered_[server], services_, [&](grpc::ClientContext* context) {
          response.Clear();
          return stubs_[server]->Score(context, request, &response);
        });
        if (!s.ok()) return Named(s, "Score", services_.reward_addresses[server]);
        if (static_cast<size_t>(response.scores_size()) != end - begin) {
          return absl::DataLossError(absl::StrCat("Score on ", services_.reward_addresses[server], ": ",
                                                  response.scores_size(), " scores for ", end - begin, " items"));
        }
        for (size_t i = begin; i < end; ++i) {
          const v1::Score& score = response.scores(static_cast<int>(i - begin));
          out[i].total = score.total();
          out[i].parts = std::map<std::string, double>(score.parts().begin(), score.parts().end());
        }
      }
      return absl::OkStatus();
    }));
    return out;
  }

 private:
  RemoteServices services_;
  size_t max_items_;
  std::vector<std::unique_ptr<v1::Reward::Stub>> stubs_;
  std::deque<std::atomic<bool>> answered_;  // by stub
};

}  // namespace

absl::StatusOr<std::unique_ptr<reward::Reward>> MakeRemoteReward(const RemoteServices& services, int64_t max_items) {
  if (services.reward_addresses.empty()) return absl::InvalidArgumentError("no reward server addresses");
  if (max_items < 1) return absl::InvalidArgumentError("max_items must be at least 1");
  return std::unique_ptr<reward::Reward>(new RemoteReward(services, max_items));
}

// ---- WeightPublisher ----

struct WeightPublisher::Impl {
  RemoteServices services;
  std::vector<std::unique_ptr<v1::Rollout::Stub>> stubs;
  std::unique_ptr<collective::WeightBroadcastGroup> group;
};

WeightPublisher::WeightPublisher(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
WeightPublisher::~WeightPublisher() = default;

absl::StatusOr<std::unique_ptr<WeightPublisher>> WeightPublisher::Create(const RemoteServices& services) {
  if (services.rollout_addresses.empty()) return absl::InvalidArgumentError("no rollout worker addresses");
  auto impl = std::make_unique<Impl>();
  impl->services = services;
  for (const std::string& a : services.rollout_addresses)
    impl->stubs.push_back(v1::Rollout::NewStub(Connect(services, a)));
  collective::WeightBroadcastGroup::Options o;
  o.device = services.device;
  o.local_host = services.local_host;
  if (services.store_address.empty()) return absl::InvalidArgumentError("no rendezvous store address");
  o.store = {services.store_address, "weights", services.credential, services.channel};
  o.rank = 0;
  o.world_size = static_cast<int>(services.rollout_addresses.size()) + 1;
  o.timeout = services.join_timeout;
  ASSIGN_OR_RETURN(impl->group, collective::WeightBroadcastGroup::Create(o));
  RETURN_IF_ERROR(impl->group->Join());
  LOG(INFO) << "weight publisher: " << services.rollout_addresses.size() << " rollout worker(s) over "
            << impl->group->transport() << " (" << o.device.str() << ")";
  return std::unique_ptr<WeightPublisher>(new WeightPublisher(std::move(impl)));
}

absl::StatusOr<WeightPublisher::Stats> WeightPublisher::Publish(
    const std::vector<std::pair<std::string, torch::Tensor>>& tensors, uint64_t version, const std::string& adapter) {
  const auto start = std::chrono::steady_clock::now();
  // On a GPU the buckets are packed there and never leave it (NCCL moves them, or a co-located rollout worker maps
  // them); `packed` outlives the announcements below, which return once every worker has applied the version.
  constexpr uint64_t kBucketBytes = uint64_t{64} << 20;
  rollout::PackedWeights packed;
  if (impl_->services.device.is_cuda()) {
    ASSIGN_OR_RETURN(packed, rollout::PackWeightsOnDevice(tensors, version, kBucketBytes));
  } else {
    ASSIGN_OR_RETURN(packed, rollout::PackWeights(tensors, version, kBucketBytes));
  }
  packed.manifest.set_adapter(adapter);
  Stats stats;
  for (uint64_t b : packed.manifest.bucket_bytes()) stats.bytes += b;
  // The announcements block on the workers until the broadcast below delivers the bytes, so they run on their own
  // threads while this one sends.
  std::vector<std::future<absl::Status>> announced;
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<grpc::ClientContext*> raw;
  for (size_t i = 0; i < impl_->stubs.size(); ++i) {
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    Prepare(contexts.back().get(), impl_->services);
    raw.push_back(contexts.back().get());
  }
  CancelSignal::Hook hook = CancelOnSignal(impl_->services, std::move(raw));  // destroyed before the contexts
  for (size_t i = 0; i < impl_->stubs.size(); ++i) {
    announced.push_back(std::async(std::launch::async, [&, i]() -> absl::Status {
      v1::UpdateWeightsRequest request;
      *request.mutable_manifest() = packed.manifest;
      v1::UpdateWeightsResponse response;
      grpc::Status s = impl_->stubs[i]->UpdateWeights(contexts[i].get(), request, &response);
      if (!s.ok()) return Named(s, "UpdateWeights", impl_->services.rollout_addresses[i]);
      if (response.version() != version) {
        return absl::InternalError(absl::StrCat("UpdateWeights on ", impl_->services.rollout_addresses[i],
                                                ": now at version ", response.version(), ", not ", version));
      }
      return absl::OkStatus();
    }));
  }
  absl::Status sent = impl_->group->Send(packed);
  if (!sent.ok()) {
    for (auto& c : contexts) c->TryCancel();  // a lost peer: do not wait for the others' deadlines
  }
  absl::Status first = sent;
  // Send returns once Gloo has handed the bytes to the kernel, so a worker cut off the network mid-transfer leaves no
  // error here, only an unanswered UpdateWeights. A live worker answers within one collective timeout of the send
  // (its receive is bounded by it); past that it is lost, rather than waited for until the RPC's deadline.
  const auto answer_by = std::chrono::steady_clock::now() +
                         std::chrono::milliseconds(absl::ToInt64Milliseconds(impl_->services.join_timeout));
  for (size_t i = 0; i < announced.size(); ++i) {
    const bool late = sent.ok() && announced[i].wait_until(answer_by) != std::future_status::ready;
    if (late) contexts[i]->TryCancel();
    absl::Status s = announced[i].get();
    if (late) {
      s = absl::UnavailableError(absl::StrCat("UpdateWeights on ", impl_->services.rollout_addresses[i],
                                              ": no answer within ", absl::FormatDuration(impl_->services.join_timeout),
                                              " of sending version ", version));
    }
    if (first.ok() && !s.ok()) first = s;
  }
  RETURN_IF_ERROR(first);
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return stats;
}

}  // namespace alignd::learner
