// A c10d::Store whose table lives behind alignd.v1.Rendezvous on learner rank 0's worker (collective/store_table.h), so
// that forming a gang's process groups passes the same credential check as every other call to a worker, and over
// TLS when the cluster has it. Internal to the process groups (collective/process_group.cc): it exposes c10d types.
//
// Each operation is one unary call with a deadline (the store's timeout for GET and WAIT, plus a margin). Until the
// store has answered once, UNAVAILABLE (the host is not up yet, or has not started the job) and PERMISSION_DENIED (it
// is still finishing an earlier job, and this one's assignment is on its way) are retried with backoff until the
// store's timeout; afterwards it means the host ended the job or went away, and fails at once (a
// background caller such as a communicator's monitor must not hang on a store that is gone). Every other failure,
// and a timeout, throws c10::DistStoreError with the server's message.
#ifndef ALIGND_COLLECTIVE_GRPC_STORE_H_
#define ALIGND_COLLECTIVE_GRPC_STORE_H_

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <torch/csrc/distributed/c10d/Store.hpp>
#include <vector>

#include "collective/store_endpoint.h"
#include "proto/alignd.grpc.pb.h"

namespace alignd::collective {

class GrpcStore : public c10d::Store {
 public:
  // Makes a channel to endpoint.address (endpoint.channel's credentials, plaintext when null); nothing is contacted
  // until the first operation. `timeout` bounds each blocking operation and the retries before the first answer.
  GrpcStore(const StoreEndpoint& endpoint, const std::chrono::milliseconds& timeout);
  // For clone(): shares `stub` and `reached` (whether the store has answered) with the store cloned.
  GrpcStore(const StoreEndpoint& endpoint, std::shared_ptr<alignd::v1::Rendezvous::Stub> stub,
            std::shared_ptr<std::atomic<bool>> reached, const std::chrono::milliseconds& timeout);

  // c10d::Store's operations, one RPC each, as described above: a failure throws c10::DistStoreError naming the
  // store, the op and the gRPC code. wait(keys) waits up to the store's timeout. Thread-safe (gRPC stubs are).
  c10::intrusive_ptr<c10d::Store> clone() override;
  void set(const std::string& key, const std::vector<uint8_t>& value) override;
  std::vector<uint8_t> compareSet(const std::string& key, const std::vector<uint8_t>& expected,
                                  const std::vector<uint8_t>& desired) override;
  std::vector<uint8_t> get(const std::string& key) override;
  int64_t add(const std::string& key, int64_t value) override;
  bool deleteKey(const std::string& key) override;
  bool check(const std::vector<std::string>& keys) override;
  int64_t getNumKeys() override;
  void wait(const std::vector<std::string>& keys) override;
  void wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& timeout) override;

 private:
  alignd::v1::StoreResponse Call(alignd::v1::StoreRequest request, std::chrono::milliseconds wait);

  StoreEndpoint endpoint_;
  std::shared_ptr<alignd::v1::Rendezvous::Stub> stub_;
  std::shared_ptr<std::atomic<bool>> reached_;  // the store has answered (shared with clones)
};

}  // namespace alignd::collective

#endif  // ALIGND_COLLECTIVE_GRPC_STORE_H_
