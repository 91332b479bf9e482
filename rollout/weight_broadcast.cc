#include "rollout/weight_broadcast.h"

#include <torch/torch.h>

#include <chrono>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "rollout/gloo_group.h"

namespace alignd::rollout {

struct WeightBroadcastGroup::Impl {
  c10::intrusive_ptr<c10d::TCPStore> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group;
};

namespace {

GlooGroupOptions GlooOptions(const WeightBroadcastGroup::Options& o) {
  GlooGroupOptions g;
  g.host = o.host;
  g.port = o.port;
  g.rank = o.rank;
  g.world_size = o.world_size;
  g.timeout = o.timeout;
  return g;
}

// Broadcasts `tensor` from rank 0 and waits. UNAVAILABLE with LibTorch's message on failure.
absl::Status Broadcast(c10d::ProcessGroupGloo& group, torch::Tensor tensor, absl::Duration timeout,
                       absl::string_view what) {
  try {
    std::vector<torch::Tensor> tensors{std::move(tensor)};
    c10d::BroadcastOptions options;
    options.rootRank = 0;
    options.timeout = Millis(timeout);
    group.broadcast(tensors, options)->wait();
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("weight broadcast: ", what, ": ", e.what()));
  }
}

torch::Tensor BytesView(std::string& bytes) {
  return torch::from_blob(bytes.data(), {static_cast<int64_t>(bytes.size())}, torch::kUInt8);
}

}  // namespace

WeightBroadcastGroup::WeightBroadcastGroup(Options options, std::unique_ptr<Impl> impl)
    : options_(std::move(options)), impl_(std::move(impl)) {}
WeightBroadcastGroup::~WeightBroadcastGroup() = default;

absl::StatusOr<std::unique_ptr<WeightBroadcastGroup>> WeightBroadcastGroup::Create(Options options) {
  auto impl = std::make_unique<Impl>();
  ASSIGN_OR_RETURN(impl->store, OpenStore(GlooOptions(options), /*min_world=*/2, "weight broadcast"));
  return std::unique_ptr<WeightBroadcastGroup>(new WeightBroadcastGroup(std::move(options), std::move(impl)));
}

uint16_t WeightBroadcastGroup::port() const { return impl_->store->getPort(); }

absl::Status WeightBroadcastGroup::Join() {
  ASSIGN_OR_RETURN(impl_->group, JoinGloo(impl_->store, GlooOptions(options_), "weight broadcast"));
  return absl::OkStatus();
}

absl::Status WeightBroadcastGroup::Send(const PackedWeights& weights) {
  if (options_.rank != 0) return absl::FailedPreconditionError("weight broadcast: only rank 0 sends");
  if (!impl_->group) return absl::FailedPreconditionError("weight broadcast: Join first");
  std::string manifest = weights.manifest.SerializeAsString();
  torch::Tensor length = torch::tensor({static_cast<int64_t>(manifest.size())}, torch::kInt64);
  RETURN_IF_ERROR(Broadcast(*impl_->group, length, options_.timeout, "manifest length"));
  RETURN_IF_ERROR(Broadcast(*impl_->group, BytesView(manifest), options_.timeout, "manifest"));
  for (size_t i = 0; i < weights.buckets.size(); ++i) {
    if (weights.buckets[i].empty()) continue;
    // Gloo reads the root's buffer only; the copy-free view needs a mutable pointer.
    std::string& bucket = const_cast<std::string&>(weights.buckets[i]);
    RETURN_IF_ERROR(Broadcast(*impl_->group, BytesView(bucket), options_.timeout, absl::StrCat("bucket ", i)));
  }
  return absl::OkStatus();
}

absl::StatusOr<PackedWeights> WeightBroadcastGroup::Receive() {
  if (options_.rank == 0) return absl::FailedPreconditionError("weight broadcast: rank 0 does not receive");
  if (!impl_->group) return absl::FailedPreconditionError("weight broadcast: Join first");
  torch::Tensor length = torch::zeros({1}, torch::kInt64);
  RETURN_IF_ERROR(Broadcast(*impl_->group, length, options_.timeout, "manifest length"));
  int64_t n = length.item<int64_t>();
  if (n <= 0 || n > (int64_t{1} << 30)) {
    return absl::DataLossError(absl::StrCat("weight broadcast: manifest length ", n, " is not plausible"));
  }
  std::string manifest_bytes(static_cast<size_t>(n), '\0');
  RETURN_IF_ERROR(Broadcast(*impl_->group, BytesView(manifest_bytes), options_.timeout, "manifest"));
  PackedWeights out;
  if (!out.manifest.ParseFromString(manifest_bytes)) {
    return absl::DataLossError("weight broadcast: the manifest does not parse");
  }
  RETURN_IF_ERROR(ValidateManifest(out.manifest));
  out.buckets.resize(out.manifest.bucket_bytes_size());
  for (int i = 0; i < out.manifest.bucket_bytes_size(); ++i) {
    out.buckets[i].resize(out.manifest.bucket_bytes(i));
    if (out.buckets[i].empty()) continue;
    RETURN_IF_ERROR(Broadcast(*impl_->group, BytesView(out.buckets[i]), options_.timeout, absl::StrCat("bucket ", i)));
  }
  return out;
}

}  // namespace alignd::rollout
