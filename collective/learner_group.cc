#include "collective/learner_group.h"

#include <torch/torch.h>

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "collective/process_group.h"
#include "common/base/status.h"

namespace alignd::collective {

struct LearnerGroup::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> group;
};

namespace {

// DDP's default bucket size: few enough collectives to amortise their latency, small enough to bound the copies.
constexpr int64_t kBucketBytes = 25 * 1024 * 1024;

using collective::Millis;

absl::Status Unavailable(absl::string_view what, const std::exception& e) {
  return absl::UnavailableError(absl::StrCat("learner group: ", what, ": ", e.what()));
}

// Sums `tensor` over the ranks in place. A host tensor on a CUDA (NCCL) group travels through the device.
void AllReduceSum(c10d::Backend& group, torch::Tensor tensor, c10::Device device, absl::Duration timeout) {
  const c10::Device where = tensor.is_cuda() ? tensor.device() : device;
  collective::HostStaging staging(std::move(tensor), where);
  c10d::AllreduceOptions options;
  options.timeout = Millis(timeout);
  group.allreduce(staging.tensors(), options)->wait();
  staging.Finish();
}

void Broadcast(c10d::Backend& group, torch::Tensor tensor, int root, c10::Device device, absl::Duration timeout) {
  collective::HostStaging staging(std::move(tensor), device);
  c10d::BroadcastOptions options;
  options.rootRank = root;
  options.timeout = Millis(timeout);
  group.broadcast(staging.tensors(), options)->wait();
  staging.Finish();
}

// Consecutive runs of tensors of one dtype, each run at most kBucketBytes (a larger tensor is a bucket of its own).
std::vector<std::vector<torch::Tensor>> Buckets(const std::vector<torch::Tensor>& tensors) {
  std::vector<std::vector<torch::Tensor>> out;
  int64_t bytes = 0;
  for (const torch::Tensor& t : tensors) {
    const int64_t size = t.numel() * static_cast<int64_t>(t.element_size());
    if (out.empty() || out.back().front().scalar_type() != t.scalar_type() || bytes + size > kBucketBytes) {
      out.emplace_back();
      bytes = 0;
    }
    out.back().push_back(t);
    bytes += size;
  }
  return out;
}

}  // namespace

LearnerGroup::LearnerGroup(Options options, std::unique_ptr<Impl> impl)
    : options_(std::move(options)), impl_(std::move(impl)) {}
LearnerGroup::~LearnerGroup() = default;

absl::StatusOr<std::unique_ptr<LearnerGroup>> LearnerGroup::Create(Options options) {
  if (options.world_size == 1 && options.rank == 0) {
    return std::unique_ptr<LearnerGroup>(new LearnerGroup(std::move(options), nullptr));
  }
  const collective::GroupOptions group_options = collective::ToGroupOptions(options);
  auto impl = std::make_unique<Impl>();
  ASSIGN_OR_RETURN(impl->store, collective::OpenStore(group_options, /*min_world=*/1, "learner group"));
  if (options.rank == 0 && options.on_listening) options.on_listening(collective::StorePort(impl->store));
  ASSIGN_OR_RETURN(impl->group, collective::JoinGroup(impl->store, group_options, "learner group"));
  try {
    // A rank's mesh can be complete before its peers' are; without this, a rank that returns and closes its group at
    // once (e.g. on a bad spec) would break a peer's rendezvous still in progress.
    c10d::BarrierOptions barrier;
    barrier.timeout = Millis(options.timeout);
    impl->group->barrier(barrier)->wait();
  } catch (const std::exception& e) {
    return Unavailable(absl::StrCat("joining as rank ", options.rank, " of ", options.world_size), e);
  }
  return std::unique_ptr<LearnerGroup>(new LearnerGroup(std::move(options), std::move(impl)));
}

uint16_t LearnerGroup::port() const { return impl_ ? collective::StorePort(impl_->store) : options_.port; }

absl::Status LearnerGroup::AllReduceMeanGradients(const std::vector<torch::Tensor>& params) {
  if (!impl_ || params.empty()) return absl::OkStatus();
  try {
    torch::NoGradGuard no_grad;
    // Agree first on which tensors carry a gradient, so that every rank builds the same buckets.
    std::vector<int32_t> has(params.size(), 0);
    for (size_t i = 0; i < params.size(); ++i) has[i] = params[i].grad().defined() ? 1 : 0;
    AllReduceSum(*impl_->group, torch::from_blob(has.data(), {static_cast<int64_t>(has.size())}, torch::kInt32),
                 options_.device, options_.timeout);
    std::vector<torch::Tensor> grads;
    for (size_t i = 0; i < params.size(); ++i) {
      if (has[i] == 0) continue;
      if (!params[i].grad().defined()) params[i].mutable_grad() = torch::zeros_like(params[i]);
      grads.push_back(params[i].grad());
    }
    const double world = static_cast<double>(options_.world_size);
    for (const auto& bucket : Buckets(grads)) {
      std::vector<torch::Tensor> flat_parts;
      for (const torch::Tensor& g : bucket) flat_parts.push_back(g.reshape({-1}));
      torch::Tensor flat = torch::cat(flat_parts);
      AllReduceSum(*impl_->group, flat, options_.device, options_.timeout);  // on the gradients' device
      flat.div_(world);
      int64_t offset = 0;
      for (const torch::Tensor& g : bucket) {
        const_cast<torch::Tensor&>(g).copy_(flat.narrow(0, offset, g.numel()).view_as(g));
        offset += g.numel();
      }
    }
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return Unavailable("gradient all-reduce", e);
  }
}

absl::Status LearnerGroup::AllReduceMean(std::vector<double>* values) {
  if (!impl_ || values->empty()) return absl::OkStatus();
  try {
    torch::Tensor t = torch::from_blob(values->data(), {static_cast<int64_t>(values->size())}, torch::kDouble);
    AllReduceSum(*impl_->group, t, options_.device, options_.timeout);
    t.div_(static_cast<double>(options_.world_size));
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return Unavailable("mean all-reduce", e);
  }
}

absl::Status LearnerGroup::BroadcastBytes(std::string* bytes, int root) {
  if (root < 0 || root >= options_.world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("learner group: broadcast root ", root, " outside [0, ", options_.world_size, ")"));
  }
  if (!impl_) return absl::OkStatus();
  try {
    torch::Tensor length = torch::tensor({static_cast<int64_t>(bytes->size())}, torch::kInt64);
    Broadcast(*impl_->group, length, root, options_.device, options_.timeout);
    const int64_t n = length.item<int64_t>();
    if (options_.rank != root) bytes->assign(static_cast<size_t>(n), '\0');
    if (n == 0) return absl::OkStatus();
    Broadcast(*impl_->group, torch::from_blob(bytes->data(), {n}, torch::kUInt8), root, options_.device,
              options_.timeout);
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return Unavailable(absl::StrCat("broadcast from rank ", root), e);
  }
}

absl::Status LearnerGroup::Barrier() {
  if (!impl_) return absl::OkStatus();
  try {
    c10d::BarrierOptions options;
    options.timeout = Millis(options_.timeout);
    impl_->group->barrier(options)->wait();
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return Unavailable("barrier", e);
  }
}

}  // namespace alignd::collective
