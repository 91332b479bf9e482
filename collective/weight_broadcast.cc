#include "collective/weight_broadcast.h"

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <map>
#include <random>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "collective/process_group.h"
#include "common/base/status.h"

namespace alignd::collective {

using rollout::Checksum;
using rollout::PackedWeights;
using rollout::ValidateManifest;

struct WeightBroadcastGroup::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> group;
  c10::Device collective_device = c10::kCPU;  // where the group's collectives read and write (NCCL: the GPU)
  bool shared = false;
  // Host buckets handed back by Recycle, by size, for the next Receive; it frees those it does not take.
  std::multimap<size_t, std::string> recycled;
};

namespace {

constexpr char kTransportGloo[] = "gloo";
constexpr char kTransportNccl[] = "nccl";
constexpr char kTransportShared[] = "shared";

// ---- Who a member is: its process and its device ----

// This process, among all processes on all machines (a pid repeats across containers that share a GPU).
uint64_t ProcessNonce() {
  static const uint64_t nonce = [] {
    std::random_device rd;
    return (static_cast<uint64_t>(rd()) << 32) ^ rd() ^ static_cast<uint64_t>(::getpid());
  }();
  return nonce;
}

// "cpu", or "gpu-" and the GPU's UUID (the same physical GPU has the same one in every process and container).
std::string DeviceIdentity(const c10::Device& device) {
  if (!device.is_cuda()) return "cpu";
  const cudaDeviceProp* prop = at::cuda::getDeviceProperties(device.index() < 0 ? 0 : device.index());
  std::string id = "gpu-";
  static constexpr char kHex[] = "0123456789abcdef";
  for (unsigned char c : prop->uuid.bytes) {
    id.push_back(kHex[c >> 4]);
    id.push_back(kHex[c & 15]);
  }
  return id;
}

struct Member {
  uint64_t process = 0;
  std::string device;
};

// Every member writes "<process> <device>" under its rank and reads everyone's (the store's get waits for a key).
absl::StatusOr<std::vector<Member>> ExchangeMembers(c10d::Store& store, int rank, int world, const Member& self) {
  try {
    const std::string prefix = "alignd/weights/member/";
    const std::string mine = absl::StrCat(self.process, " ", self.device);
    store.set(absl::StrCat(prefix, rank), std::vector<uint8_t>(mine.begin(), mine.end()));
    std::vector<Member> members(static_cast<size_t>(world));
    for (int r = 0; r < world; ++r) {
      std::vector<uint8_t> v = store.get(absl::StrCat(prefix, r));
      const std::string text(v.begin(), v.end());
      const size_t space = text.find(' ');
      if (space == std::string::npos) return absl::DataLossError(absl::StrCat("member ", r, " wrote \"", text, "\""));
      members[static_cast<size_t>(r)].process = std::stoull(text.substr(0, space));
      members[static_cast<size_t>(r)].device = text.substr(space + 1);
    }
    return members;
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("exchanging members: ", e.what()));
  }
}

// ---- Buckets shared within this process ----

// The sender's device buckets, by token, while receivers in its own process pick them up.
struct SharedBuckets {
  absl::Mutex mu;
  uint64_t next ABSL_GUARDED_BY(mu) = 1;
  std::map<uint64_t, std::vector<at::Tensor>> entries ABSL_GUARDED_BY(mu);
};

SharedBuckets& Registry() {
  static auto* registry = new SharedBuckets;
  return *registry;
}

// ---- The handles that travel (shared transport) ----

struct Handles {
  uint64_t process = 0;  // the sender's ProcessNonce
  uint64_t token = 0;    // its registry entry
  struct Bucket {
    uint64_t offset = 0;  // into the allocation the handle names
    uint64_t size = 0;
    std::string handle;  // CUDA IPC; empty on the CPU
  };
  std::vector<Bucket> buckets;
};

void PutU64(std::string* out, uint64_t v) { out->append(reinterpret_cast<const char*>(&v), sizeof v); }

bool GetU64(absl::string_view* in, uint64_t* v) {
  if (in->size() < sizeof *v) return false;
  std::memcpy(v, in->data(), sizeof *v);
  in->remove_prefix(sizeof *v);
  return true;
}

std::string Serialize(const Handles& h) {
  std::string out;
  PutU64(&out, h.process);
  PutU64(&out, h.token);
  PutU64(&out, h.buckets.size());
  for (const Handles::Bucket& b : h.buckets) {
    PutU64(&out, b.offset);
    PutU64(&out, b.size);
    PutU64(&out, b.handle.size());
    out += b.handle;
  }
  return out;
}

absl::StatusOr<Handles> ParseHandles(absl::string_view in) {
  Handles h;
  uint64_t count = 0;
  if (!GetU64(&in, &h.process) || !GetU64(&in, &h.token) || !GetU64(&in, &count) || count > (1u << 20)) {
    return absl::DataLossError("weight broadcast: the bucket handles do not parse");
  }
  for (uint64_t i = 0; i < count; ++i) {
    Handles::Bucket b;
    uint64_t length = 0;
    if (!GetU64(&in, &b.offset) || !GetU64(&in, &b.size) || !GetU64(&in, &length) || length > in.size()) {
      return absl::DataLossError(absl::StrCat("weight broadcast: bucket handle ", i, " does not parse"));
    }
    b.handle = std::string(in.substr(0, length));
    in.remove_prefix(length);
    h.buckets.push_back(std::move(b));
  }
  return h;
}

// ---- Collectives ----

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

// Broadcasts `tensor` from rank 0 and waits; receivers find the result in `tensor`. UNAVAILABLE with LibTorch's
// message on failure.
absl::Status Broadcast(c10d::Backend& group, torch::Tensor tensor, c10::Device device, absl::Duration timeout,
                       absl::string_view what) {
  HostStaging staging(std::move(tensor), device);
  ASSIGN_OR_RETURN(c10::intrusive_ptr<c10d::Work> work, StartBroadcast(group, staging, timeout, what));
  RETURN_IF_ERROR(Wait(*work, what));
  staging.Finish();
  return absl::OkStatus();
}

// The sum of every rank's `value` (the shared transport's acknowledgement).
absl::StatusOr<int64_t> SumOverRanks(c10d::Backend& group, int64_t value, absl::Duration timeout) {
  torch::Tensor t = torch::tensor({value}, torch::kInt64);
  std::vector<torch::Tensor> tensors = {t};
  try {
    c10d::AllreduceOptions options;
    options.reduceOp = c10d::ReduceOp::SUM;
    options.timeout = Millis(timeout);
    group.allreduce(tensors, options)->wait();
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("weight broadcast: acknowledgement: ", e.what()));
  }
  return t.item<int64_t>();
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

// Sends a length-prefixed byte string from rank 0; `bytes` is filled on the others.
absl::Status BroadcastBytes(c10d::Backend& group, std::string* bytes, bool root, c10::Device device,
                            absl::Duration timeout, absl::string_view what) {
  torch::Tensor length = torch::tensor({root ? static_cast<int64_t>(bytes->size()) : int64_t{0}}, torch::kInt64);
  RETURN_IF_ERROR(Broadcast(group, length, device, timeout, absl::StrCat(what, " length")));
  const int64_t n = length.item<int64_t>();
  if (n < 0 || n > (int64_t{1} << 30)) {
    return absl::DataLossError(absl::StrCat("weight broadcast: ", what, " length ", n, " is not plausible"));
  }
  if (!root) bytes->assign(static_cast<size_t>(n), '\0');
  if (n == 0) return absl::OkStatus();
  return Broadcast(group, BytesView(*bytes), device, timeout, what);
}

// Maps the buckets that `handles` name: the tensors themselves when the sender is this process, else the sender's
// device memory through CUDA IPC (on `device`, which must be the sender's GPU). The tensors keep the mapping open.
absl::StatusOr<std::vector<at::Tensor>> MapBuckets(const Handles& handles, const c10::Device& device) {
  if (handles.process == ProcessNonce()) {
    SharedBuckets& registry = Registry();
    absl::MutexLock lock(&registry.mu);
    auto it = registry.entries.find(handles.token);
    if (it == registry.entries.end()) {
      return absl::NotFoundError(absl::StrCat("weight broadcast: shared buckets ", handles.token, " are gone"));
    }
    return it->second;
  }
  if (!device.is_cuda()) {
    return absl::FailedPreconditionError("weight broadcast: buckets on the CPU cannot be shared across processes");
  }
  std::vector<at::Tensor> out;
  try {
    for (const Handles::Bucket& b : handles.buckets) {
      std::shared_ptr<void> base = c10::cuda::CUDACachingAllocator::getIpcDevPtr(b.handle);
      void* data = static_cast<char*>(base.get()) + b.offset;
      out.push_back(torch::from_blob(
          data, {static_cast<int64_t>(b.size)}, [base](void*) {}, torch::dtype(torch::kUInt8).device(device)));
    }
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("weight broadcast: opening a CUDA IPC handle: ", e.what()));
  }
  return out;
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

uint16_t WeightBroadcastGroup::port() const { return StorePort(impl_->store); }

absl::Status WeightBroadcastGroup::Join() {
  std::string identity;
  try {
    identity = DeviceIdentity(options_.device);
  } catch (const std::exception& e) {
    return absl::FailedPreconditionError(absl::StrCat("weight broadcast: ", options_.device.str(), ": ", e.what()));
  }
  ASSIGN_OR_RETURN(std::vector<Member> members,
                   ExchangeMembers(*impl_->store, options_.rank, options_.world_size, {ProcessNonce(), identity}));
  // Every rank decides alike, from the same list.
  const Member& sender = members.front();
  bool all_on_senders_gpu = options_.device.is_cuda();
  std::vector<int> unreachable;
  for (size_t r = 1; r < members.size(); ++r) {
    const bool same_gpu = members[r].device == sender.device && sender.device != "cpu";
    all_on_senders_gpu = all_on_senders_gpu && same_gpu;
    if (!same_gpu && members[r].process != sender.process) unreachable.push_back(static_cast<int>(r));
  }
  GroupOptions group_options = ToGroupOptions(options_);
  if (options_.transport == Options::Transport::kShared || all_on_senders_gpu) {
    if (!unreachable.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("weight broadcast: sharing needs every receiver in the sender's process or on its GPU; rank(s) ",
                       absl::StrJoin(unreachable, ", "), " are neither"));
    }
    impl_->shared = true;
    transport_ = kTransportShared;
    group_options.device = c10::kCPU;  // Gloo on loopback carries the manifest and the handles
  } else {
    transport_ = options_.device.is_cuda() ? kTransportNccl : kTransportGloo;
  }
  impl_->collective_device = group_options.device;
  ASSIGN_OR_RETURN(impl_->group, JoinGroup(impl_->store, group_options, "weight broadcast"));
  return absl::OkStatus();
}

absl::Status WeightBroadcastGroup::Send(const PackedWeights& weights) {
  if (options_.rank != 0) return absl::FailedPreconditionError("weight broadcast: only rank 0 sends");
  if (!impl_->group) return absl::FailedPreconditionError("weight broadcast: Join first");
  if (impl_->shared && weights.device_buckets.empty()) {
    return absl::InvalidArgumentError(
        "weight broadcast: the shared transport sends device buckets "
        "(PackWeightsOnDevice), not host bytes");
  }
  std::string manifest = weights.manifest.SerializeAsString();
  RETURN_IF_ERROR(
      BroadcastBytes(*impl_->group, &manifest, /*root=*/true, impl_->collective_device, options_.timeout, "manifest"));
  if (impl_->shared) return SendShared(weights);
  // Every bucket is queued at once: the group sends them back to back while the receiver, which keeps one bucket
  // ahead of the one arriving, hashes and allocates.
  const bool on_device = !weights.device_buckets.empty();
  const size_t count = on_device ? weights.device_buckets.size() : weights.buckets.size();
  std::vector<c10::intrusive_ptr<c10d::Work>> pending(count);
  std::vector<std::unique_ptr<HostStaging>> staged(count);  // alive until the work completes
  absl::Status status;
  for (size_t i = 0; i < count && status.ok(); ++i) {
    torch::Tensor data;
    if (on_device) {
      data = weights.device_buckets[i];
    } else {
      // The root's buffer is only read; the copy-free view needs a mutable pointer.
      data = BytesView(const_cast<std::string&>(weights.buckets[i]));
    }
    if (data.numel() == 0) continue;
    staged[i] = std::make_unique<HostStaging>(data, impl_->collective_device);
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

absl::Status WeightBroadcastGroup::SendShared(const PackedWeights& weights) {
  Handles handles;
  handles.process = ProcessNonce();
  SharedBuckets& registry = Registry();
  try {
    const c10::Device device = weights.device_buckets.front().device();
    // The packing ran on this process's stream; a receiver in another process reads on its own.
    if (device.is_cuda()) c10::cuda::getCurrentCUDAStream(device.index()).synchronize();
    for (const at::Tensor& b : weights.device_buckets) {
      Handles::Bucket out;
      out.size = static_cast<uint64_t>(b.numel());
      if (device.is_cuda() && b.numel() > 0) {
        c10::cuda::CUDACachingAllocator::ShareableHandle h =
            c10::cuda::CUDACachingAllocator::shareIpcHandle(b.data_ptr());
        out.offset = static_cast<uint64_t>(h.offset);
        out.handle = std::move(h.handle);
      }
      handles.buckets.push_back(std::move(out));
    }
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("weight broadcast: sharing the buckets: ", e.what()));
  }
  {
    absl::MutexLock lock(&registry.mu);
    handles.token = registry.next++;
    registry.entries[handles.token] = weights.device_buckets;
  }
  std::string bytes = Serialize(handles);
  absl::Status status = BroadcastBytes(*impl_->group, &bytes, /*root=*/true, impl_->collective_device, options_.timeout,
                                       "bucket handles");
  absl::StatusOr<int64_t> mapped =
      status.ok() ? SumOverRanks(*impl_->group, 0, options_.timeout) : absl::StatusOr<int64_t>(status);
  {
    absl::MutexLock lock(&registry.mu);  // receivers in this process hold the tensors themselves now
    registry.entries.erase(handles.token);
  }
  RETURN_IF_ERROR(mapped.status());
  if (*mapped != options_.world_size - 1) {
    return absl::UnavailableError(absl::StrCat("weight broadcast: ", options_.world_size - 1 - *mapped, " of ",
                                               options_.world_size - 1, " receivers could not map the buckets"));
  }
  return absl::OkStatus();
}

absl::StatusOr<PackedWeights> WeightBroadcastGroup::Receive() {
  if (options_.rank == 0) return absl::FailedPreconditionError("weight broadcast: rank 0 does not receive");
  if (!impl_->group) return absl::FailedPreconditionError("weight broadcast: Join first");
  std::string manifest_bytes;
  RETURN_IF_ERROR(BroadcastBytes(*impl_->group, &manifest_bytes, /*root=*/false, impl_->collective_device,
                                 options_.timeout, "manifest"));
  PackedWeights out;
  // A manifest that does not parse or validate still lets the handles and the acknowledgement go by, so that the
  // sender hears of it and the ranks stay in step.
  absl::Status manifest_ok = out.manifest.ParseFromString(manifest_bytes)
                                 ? ValidateManifest(out.manifest)
                                 : absl::DataLossError("weight broadcast: the manifest does not parse");
  if (impl_->shared) {
    std::string bytes;
    RETURN_IF_ERROR(BroadcastBytes(*impl_->group, &bytes, /*root=*/false, impl_->collective_device, options_.timeout,
                                   "bucket handles"));
    absl::StatusOr<Handles> handles = ParseHandles(bytes);
    absl::StatusOr<std::vector<at::Tensor>> mapped = handles.ok()
                                                         ? MapBuckets(*handles, options_.device)
                                                         : absl::StatusOr<std::vector<at::Tensor>>(handles.status());
    const bool ok = manifest_ok.ok() && mapped.ok();
    RETURN_IF_ERROR(SumOverRanks(*impl_->group, ok ? 1 : 0, options_.timeout).status());
    RETURN_IF_ERROR(manifest_ok);
    RETURN_IF_ERROR(mapped.status());
    out.device_buckets = *std::move(mapped);
    return out;
  }
  RETURN_IF_ERROR(manifest_ok);
  // Bucket i + 1 is allocated and queued before bucket i is waited for, and a host bucket i is hashed while i + 1
  // arrives, so that neither the allocation nor the checksum adds to the transfer (ApplyWeightUpdate takes the
  // digest). On NCCL the buckets arrive on the device and stay there.
  const bool on_device = impl_->collective_device.is_cuda();
  const int count = out.manifest.bucket_bytes_size();
  if (on_device) {
    out.device_buckets.resize(count);
  } else {
    out.buckets.resize(count);
  }
  std::vector<c10::intrusive_ptr<c10d::Work>> pending(count);
  std::vector<std::unique_ptr<HostStaging>> staged(count);
  auto start = [&](int i) -> absl::Status {
    const auto size = static_cast<int64_t>(out.manifest.bucket_bytes(i));
    torch::Tensor data;
    try {
      if (on_device) {
        data = out.device_buckets[i] =
            torch::empty({size}, torch::dtype(torch::kUInt8).device(impl_->collective_device));
      } else {
        auto kept = impl_->recycled.find(static_cast<size_t>(size));
        if (kept != impl_->recycled.end()) {
          out.buckets[i] = std::move(kept->second);  // already mapped: no page faults, no zeroing
          impl_->recycled.erase(kept);
        } else {
          out.buckets[i].resize(static_cast<size_t>(size));
        }
        data = BytesView(out.buckets[i]);
      }
    } catch (const std::exception& e) {
      return absl::ResourceExhaustedError(
          absl::StrCat("weight broadcast: bucket ", i, " of ", size, " bytes: ", e.what()));
    }
    if (size == 0) return absl::OkStatus();
    staged[i] = std::make_unique<HostStaging>(data, impl_->collective_device);
    ASSIGN_OR_RETURN(pending[i],
                     StartBroadcast(*impl_->group, *staged[i], options_.timeout, absl::StrCat("bucket ", i)));
    return absl::OkStatus();
  };
  Checksum sum(out.manifest.checksum_algorithm());
  absl::Status status = count > 0 ? start(0) : absl::OkStatus();
  for (int i = 0; i < count && status.ok(); ++i) {
    if (i + 1 < count) status = start(i + 1);
    if (status.ok() && pending[i]) status = Wait(*pending[i], absl::StrCat("bucket ", i));
    pending[i].reset();
    if (status.ok() && staged[i]) staged[i]->Finish();
    if (status.ok() && !on_device) sum.Update(out.buckets[i]);
  }
  Drain(pending);
  impl_->recycled.clear();
  RETURN_IF_ERROR(status);
  if (!on_device) out.buckets_checksum = sum.HexDigest();
  return out;
}

void WeightBroadcastGroup::Recycle(std::vector<std::string> buckets) {
  uint64_t kept = 0;
  for (const auto& [size, bytes] : impl_->recycled) kept += size;
  for (std::string& b : buckets) {
    if (b.empty() || kept + b.size() > options_.max_recycled_bytes) continue;
    kept += b.size();
    const size_t size = b.size();
    impl_->recycled.emplace(size, std::move(b));
  }
}

}  // namespace alignd::collective
