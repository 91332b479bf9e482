#include "collective/process_group.h"

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "collective/grpc_store.h"

namespace alignd::collective {
namespace {

bool IsLoopback(const std::string& host) {
  return host == "localhost" || host == "::1" || absl::StartsWith(host, "127.");
}

// "host" of "host:port" or "[v6]:port".
std::string HostPart(const std::string& address) {
  std::string host = address.substr(0, address.rfind(':'));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  return host;
}

}  // namespace

const char* BackendName(const GroupOptions& options) { return options.device.is_cuda() ? "nccl" : "gloo"; }

absl::StatusOr<c10::intrusive_ptr<c10d::Store>> OpenStore(const GroupOptions& options, int min_world,
                                                          absl::string_view who) {
  if (options.world_size < min_world) {
    return absl::InvalidArgumentError(absl::StrCat(who, ": world_size ", options.world_size, " < ", min_world));
  }
  if (options.rank < 0 || options.rank >= options.world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat(who, ": rank ", options.rank, " outside [0, ", options.world_size, ")"));
  }
  if (!options.store.address.empty()) {
    return c10::intrusive_ptr<c10d::Store>(c10::make_intrusive<GrpcStore>(options.store, Millis(options.timeout)));
  }
  if (options.rank > 0 && options.port == 0) {
    return absl::InvalidArgumentError(absl::StrCat(who, ": ranks other than 0 need rank 0's port"));
  }
  try {
    c10d::TCPStoreOptions store_options;
    store_options.port = options.port;
    store_options.isServer = options.rank == 0;
    store_options.numWorkers = options.world_size;
    store_options.waitWorkers = false;  // the group's rendezvous waits for everyone
    store_options.timeout = Millis(options.timeout);
    return c10::intrusive_ptr<c10d::Store>(c10::make_intrusive<c10d::TCPStore>(options.host, store_options));
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat(who, ": store at ", options.host, ":", options.port, ": ", e.what()));
  }
}

uint16_t StorePort(const c10::intrusive_ptr<c10d::Store>& store) {
  auto* tcp = dynamic_cast<c10d::TCPStore*>(store.get());
  return tcp ? tcp->getPort() : 0;
}

absl::StatusOr<c10::intrusive_ptr<c10d::Backend>> JoinGroup(const c10::intrusive_ptr<c10d::Store>& store,
                                                            const GroupOptions& options, absl::string_view who) {
  try {
    if (options.device.is_cuda()) {
#ifdef USE_C10D_NCCL
      auto nccl = c10d::ProcessGroupNCCL::Options::create();
      nccl->timeout = Millis(options.timeout);
      auto group = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, options.rank, options.world_size, nccl);
      // Bind the communicator to this member's GPU now (what init_process_group(device_id=...) does), so that the
      // rendezvous happens here, within the timeout, and barriers use this device rather than a guess.
      group->eagerConnectSingleDevice(options.device);
      return c10::intrusive_ptr<c10d::Backend>(group);
#else
      return absl::FailedPreconditionError(
          absl::StrCat(who, ": ", options.device.str(), " needs NCCL, which this LibTorch build lacks"));
#endif
    }
    auto gloo = c10d::ProcessGroupGloo::Options::create(Millis(options.timeout));
    const std::string store_host = options.store.address.empty() ? options.host : HostPart(options.store.address);
    if (!options.local_host.empty()) {
      gloo->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(options.local_host));
    } else if (IsLoopback(store_host)) {
      gloo->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(store_host));
    } else {
      gloo->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    gloo->threads = 1;  // one collective at a time
    return c10::intrusive_ptr<c10d::Backend>(
        c10::make_intrusive<c10d::ProcessGroupGloo>(store, options.rank, options.world_size, gloo));
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat(who, ": joining as rank ", options.rank, " of ", options.world_size,
                                               " (", BackendName(options), "): ", e.what()));
  }
}

HostStaging::HostStaging(at::Tensor host, c10::Device device) : host_(std::move(host)) {
  tensors_.push_back(device.is_cuda() ? host_.to(device) : host_);
}

void HostStaging::Finish() {
  if (tensors_.front().data_ptr() != host_.data_ptr()) host_.copy_(tensors_.front());
}

}  // namespace alignd::collective
