// Where a gang's rendezvous store is served over gRPC (alignd.v1.Rendezvous on learner rank 0's worker), and what a
// member shows it. Torch-free, so that the public options of the groups (collective/learner_group.h,
// collective/weight_broadcast.h) can carry it.
#ifndef ALIGND_COLLECTIVE_STORE_ENDPOINT_H_
#define ALIGND_COLLECTIVE_STORE_ENDPOINT_H_

#include <memory>
#include <string>

namespace grpc {
class ChannelCredentials;
}  // namespace grpc

namespace alignd::collective {

struct StoreEndpoint {
  std::string address;     // host:port of the Rendezvous service; empty: the group uses a c10d TCPStore instead
  std::string group;       // the group's namespace in the job's store ("learners", "weights")
  std::string credential;  // the job's credential, sent as "authorization: Bearer <credential>"
  std::shared_ptr<grpc::ChannelCredentials> channel;  // null: plaintext
};

}  // namespace alignd::collective

#endif  // ALIGND_COLLECTIVE_STORE_ENDPOINT_H_
