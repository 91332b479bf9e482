#include "rollout/weight_broadcast.h"

#include <torch/torch.h>

#include <chrono>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "rollout/process_group.h"

namespace alignd::rollout {

struct WeightBroadcastGroup::Impl {
  c10::intrusive_ptr<c10d::TCPStore> store;
  c10::intrusive_ptr<c10d::Backend> group;
};

namespace {

GroupOptions ToGroupOptions(const WeightBroadcastGroup::Options& o) {
  GroupOptions g;
  g.host = o.host;
  g.port = o.port;
  g.rank = o.rank;
  g.world_size = o.world_size;
  g.timeout = o.timeout;
  g.device = o.device;
  return g;
}

// Starts broadcasting `staging`'s tensor from rank 0 (the group runs its collectives in order, one at a time).
absl::StatusOr<c10::intrusive_ptr<c10d::Work>> StartBroadcast(c10d::Backend& group, HostStaging& staging,
                                                             absl::Duration timeout, absl::string_view what) {
  try {
    c10d::BroadcastOptions options;
    options.rootRank = 0;
    options.timeout = Millis(timeout);
    return group.broadcast(staging.tensors(), options);
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("weight broadcast: ", what, ": ", e.what()));
  }
}

absl::Status Wait(c10d::Work& work, absl::string_view what) {
  try {
    work.wait();
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("weight broadcast: ", what, ": ", e.what()));
  }
}

// Broadcasts host `tensor` from rank 0 and waits; receivers find the result in `tensor`. UNAVAILABLE with LibTorch's
// message on failure.
absl::Status Broadcast(c10d::Backend& group, torch::Tensor tensor, c10::Device device, absl::Duration timeout,
                       absl::string_view what) {
  HostStaging staging(std::move(tensor), device);
  ASSIGN_OR_RETURN(c10::intrusive_ptr<c10d::Work> work, StartBroadcast(group, staging, timeout, what));
  RETURN_IF_ERROR(Wait(*work, what));
  staging.Finish();
  return absl::OkStatus();
}

// Collectives still in flight write into (or read from) buffers that the caller is about to free: wait them out
// (after a failure they fail too, at the latest after the group's timeout).
void Drain(std::vector<c10::intrusive_ptr<c10d::Work>>& pending) {
  for (auto& w : pending) {
    if (w) Wait(*w, "").IgnoreError();
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
  ASSIGN_OR_RETURN(impl->store, OpenStore(ToGroupOptions(options), /*min_world=*/2, "weight broadcast"));
  return std::unique_ptr<WeightBroadcastGroup>(new WeightBroadcastGroup(std::move(options), std::move(impl)));
}

uint16_t WeightBroadcastGroup::port() const { return impl_->store->getPort(); }

absl::Status WeightBroadcastGroup::Join() {
  ASSIGN_OR_RETURN(impl_->group, JoinGroup(impl_->store, ToGroupOptions(options_), "weight broadcast"));
  return absl::OkStatus();
}

absl::Status WeightBroadcastGroup::Send(const PackedWeights& weights) {
  if (options_.rank != 0) return absl::FailedPreconditionError("weight broadcast: only rank 0 sends");
  if (!impl_->group) return absl::FailedPreconditionError("weight broadcast: Join first");
  std::string manifest = weights.manifest.SerializeAsString();
  torch::Tensor length = torch::tensor({static_cast<int64_t>(manifest.size())}, torch::kInt64);
  RETURN_IF_ERROR(Broadcast(*impl_->group, length, options_.device, options_.timeout, "manifest length"));
  RETURN_IF_ERROR(Broadcast(*impl_->group, BytesView(manifest), options_.device, options_.timeout, "manifest"));
  // Every bucket is queued at once: the group sends them back to back while the receiver, which keeps one bucket
  // ahead of the one arriving, hashes and allocates.
  std::vector<c10::intrusive_ptr<c10d::Work>> pending(weights.buckets.size());
  std::vector<std::unique_ptr<HostStaging>> staged(weights.buckets.size());  // alive until the work completes
  absl::Status status;
  for (size_t i = 0; i < weights.buckets.size() && status.ok(); ++i) {
    if (weights.buckets[i].empty()) continue;
    // The root's buffer is only read; the copy-free view needs a mutable pointer.
    std::string& bucket = const_cast<std::string&>(weights.buckets[i]);
    staged[i] = std::make_unique<HostStaging>(BytesView(bucket), options_.device);
    absl::StatusOr<c10::intrusive_ptr<c10d::Work>> work =
        StartBroadcast(*impl_->group, *staged[i], options_.timeout, absl::StrCat("bucket ", i));
    if (work.ok()) pending[i] = *std::move(work);
    status = work.status();
  }
  for (size_t i = 0; i < pending.size() && status.ok(); ++i) {
    if (pending[i]) status = Wait(*pending[i], absl::StrCat("bucket ", i));
    pending[i].reset();
  }
  Drain(pending);
  return status;
}

absl::StatusOr<PackedWeights> WeightBroadcastGroup::Receive() {
  if (options_.rank == 0) return absl::FailedPreconditionError("weight broadcast: rank 0 does not receive");
  if (!impl_->group) return absl::FailedPreconditionError("weight broadcast: Join first");
  torch::Tensor length = torch::zeros({1}, torch::kInt64);
  RETURN_IF_ERROR(Broadcast(*impl_->group, length, options_.device, options_.timeout, "manifest length"));
  int64_t n = length.item<int64_t>();
  if (n <= 0 || n > (int64_t{1} << 30)) {
    return absl::DataLossError(absl::StrCat("weight broadcast: manifest length ", n, " is not plausible"));
  }
  std::string manifest_bytes(static_cast<size_t>(n), '\0');
  RETURN_IF_ERROR(Broadcast(*impl_->group, BytesView(manifest_bytes), options_.device, options_.timeout, "manifest"));
  PackedWeights out;
  if (!out.manifest.ParseFromString(manifest_bytes)) {
    return absl::DataLossError("weight broadcast: the manifest does not parse");
  }
  RETURN_IF_ERROR(ValidateManifest(out.manifest));
  // Bucket i + 1 is allocated and queued before bucket i is waited for, and bucket i is hashed while i + 1 arrives,
  // so that neither the allocation nor the checksum adds to the transfer (ApplyWeightUpdate takes the digest).
  const int count = out.manifest.bucket_bytes_size();
  out.buckets.resize(count);
  std::vector<c10::intrusive_ptr<c10d::Work>> pending(count);
  std::vector<std::unique_ptr<HostStaging>> staged(count);
  auto start = [&](int i) -> absl::Status {
    out.buckets[i].resize(out.manifest.bucket_bytes(i));
    if (out.buckets[i].empty()) return absl::OkStatus();
    staged[i] = std::make_unique<HostStaging>(BytesView(out.buckets[i]), options_.device);
    ASSIGN_OR_RETURN(pending[i], StartBroadcast(*impl_->group, *staged[i], options_.timeout,
                                                absl::StrCat("bucket ", i)));
    return absl::OkStatus();
  };
  Checksum sum(out.manifest.checksum_algorithm());
  absl::Status status = count > 0 ? start(0) : absl::OkStatus();
  for (int i = 0; i < count && status.ok(); ++i) {
    if (i + 1 < count) status = start(i + 1);
    if (status.ok() && pending[i]) status = Wait(*pending[i], absl::StrCat("bucket ", i));
    pending[i].reset();
    if (status.ok() && staged[i]) staged[i]->Finish();
    if (status.ok()) sum.Update(out.buckets[i]);
  }
  Drain(pending);
  RETURN_IF_ERROR(status);
  out.buckets_checksum = sum.HexDigest();
  return out;
}

}  // namespace alignd::rollout
