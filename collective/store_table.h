// The server side of a gang's rendezvous store: the key-value table behind alignd.v1.Rendezvous, with c10d::Store's
// operations (see StoreOp in proto/alignd.proto). One table serves one job attempt; groups are separate namespaces
// in it. Who may call is the hosting worker's business (node/routers.h), not the table's.
//
// Thread safety: thread-safe. GET and WAIT block until their keys exist, the deadline passes (DEADLINE_EXCEEDED), or
// the table is closed (UNAVAILABLE).
#ifndef ALIGND_COLLECTIVE_STORE_TABLE_H_
#define ALIGND_COLLECTIVE_STORE_TABLE_H_

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "proto/alignd.pb.h"

namespace alignd::collective {

class StoreTable {
 public:
  // Limits on what a member may put in the table (INVALID_ARGUMENT / RESOURCE_EXHAUSTED past them).
  static constexpr size_t kMaxKeyBytes = 4096;
  static constexpr size_t kMaxValueBytes = 16 << 20;
  static constexpr size_t kMaxTotalBytes = 256 << 20;
  static constexpr int kMaxKeysPerRequest = 4096;

  // Applies `request`; a blocking operation waits until `deadline` at most (and the request's own timeout_ms, when
  // set). INVALID_ARGUMENT for an unknown op, a missing key or one over the limits.
  absl::Status Apply(const alignd::v1::StoreRequest& request, alignd::v1::StoreResponse* response, absl::Time deadline);
  // Ends every wait (UNAVAILABLE) and refuses what comes later. Idempotent.
  void Close();

 private:
  absl::Status AwaitKeys(const std::string& group, const alignd::v1::StoreRequest& request, absl::Time deadline)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  std::map<std::string, std::string> values_ ABSL_GUARDED_BY(mu_);  // group + '\0' + key -> value
  size_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace alignd::collective

#endif  // ALIGND_COLLECTIVE_STORE_TABLE_H_
