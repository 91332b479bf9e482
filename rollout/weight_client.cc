#include "rollout/weight_client.h"

#include <algorithm>
#include <memory>

#include "common/rpc/grpc_status.h"

namespace alignd::rollout {

absl::StatusOr<uint64_t> PushWeights(alignd::v1::Rollout::StubInterface& stub, const PackedWeights& weights,
                                     const PushOptions& options) {
  if (options.chunk_bytes == 0) return absl::InvalidArgumentError("push weights: chunk_bytes must be >= 1");
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + options.timeout));
  alignd::v1::UpdateWeightsResponse response;
  std::unique_ptr<grpc::ClientWriterInterface<alignd::v1::WeightChunk>> writer =
      stub.UpdateWeightsStream(&context, &response);
  alignd::v1::WeightChunk first;
  *first.mutable_manifest() = weights.manifest;
  bool open = writer->Write(first);
  for (size_t b = 0; open && b < weights.buckets.size(); ++b) {
    const std::string& bucket = weights.buckets[b];
    for (size_t offset = 0; open && offset < bucket.size(); offset += options.chunk_bytes) {
      alignd::v1::WeightChunk chunk;
      chunk.set_bucket(static_cast<uint32_t>(b));
      chunk.set_offset(offset);
      chunk.set_data(bucket.substr(offset, std::min(options.chunk_bytes, bucket.size() - offset)));
      open = writer->Write(chunk);
    }
  }
  // A failed Write means the server has already answered (an early error): Finish returns its status.
  if (open) writer->WritesDone();
  absl::Status status = FromGrpcStatus(writer->Finish());
  if (!status.ok()) return status;
  return response.version();
}

}  // namespace alignd::rollout
