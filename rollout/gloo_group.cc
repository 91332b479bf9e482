#include "rollout/gloo_group.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace alignd::rollout {
namespace {

bool IsLoopback(const std::string& host) {
  return host == "localhost" || host == "::1" || absl::StartsWith(host, "127.");
}

}  // namespace

absl::StatusOr<c10::intrusive_ptr<c10d::TCPStore>> OpenStore(const GlooGroupOptions& options, int min_world,
                                                             absl::string_view who) {
  if (options.world_size < min_world) {
    return absl::InvalidArgumentError(absl::StrCat(who, ": world_size ", options.world_size, " < ", min_world));
  }
  if (options.rank < 0 || options.rank >= options.world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat(who, ": rank ", options.rank, " outside [0, ", options.world_size, ")"));
  }
  if (options.rank > 0 && options.port == 0) {
    return absl::InvalidArgumentError(absl::StrCat(who, ": ranks other than 0 need rank 0's port"));
  }
  try {
    c10d::TCPStoreOptions store_options;
    store_options.port = options.port;
    store_options.isServer = options.rank == 0;
    store_options.numWorkers = options.world_size;
    store_options.waitWorkers = false;  // the Gloo rendezvous waits for everyone
    store_options.timeout = Millis(options.timeout);
    return c10::make_intrusive<c10d::TCPStore>(options.host, store_options);
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat(who, ": store at ", options.host, ":", options.port, ": ", e.what()));
  }
}

absl::StatusOr<c10::intrusive_ptr<c10d::ProcessGroupGloo>> JoinGloo(const c10::intrusive_ptr<c10d::TCPStore>& store,
                                                                     const GlooGroupOptions& options,
                                                                     absl::string_view who) {
  try {
    auto gloo = c10d::ProcessGroupGloo::Options::create(Millis(options.timeout));
    gloo->devices.push_back(IsLoopback(options.host) ? c10d::ProcessGroupGloo::createDeviceForHostname(options.host)
                                                     : c10d::ProcessGroupGloo::createDefaultDevice());
    gloo->threads = 1;  // one collective at a time
    return c10::make_intrusive<c10d::ProcessGroupGloo>(store, options.rank, options.world_size, gloo);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat(who, ": joining as rank ", options.rank, " of ", options.world_size, ": ", e.what()));
  }
}

}  // namespace alignd::rollout
