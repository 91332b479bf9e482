// gRPC adapter for alignd.v1.Rollout over an Engine: each handler validates, calls the engine (or the weight-update
// functions of rollout/weight_update.h) and converts the status once (HandleRpc).
//
// Generate: prompts come as strings (rendered with the engine's chat template) or as token ids (the caller's own
// encoding; INVALID_ARGUMENT when a request has both); `adapter` names one of the engine's loaded adapters
// (Engine::LoadAdapter; NOT_FOUND otherwise, listing the loaded ones). GenerateStream: the same request, answered
// Options::stream_part_prompts prompts per message as each part finishes (prompt indices are the request's; with
// temperature > 0 a part samples as a request of its own would, so the draws differ from the unary call's).
// Proto3 zeros mean "unset": top_p 0 -> 1, max_new_tokens 0 -> Options::default_max_new_tokens, n 0 -> 1; an empty
// stop_token_ids list means the engine's defaults. Codes: INVALID_ARGUMENT for no prompts, prompts x n over
// Options::max_request_rows (oversized: split the request), or any engine validation error; NOT_FOUND for an
// adapter that is not loaded; INTERNAL when LibTorch fails; GenerateStream also CANCELLED when the client goes away
// between parts (the unary Generate does not watch for cancellation or the deadline: it runs to the end).
// UpdateWeights: the manifest plus inline buckets; or, with no buckets, the bytes come from Options::collective
// (the announced manifest is checked first, as far as it can be without the bytes, and must then equal the one
// received there: ABORTED otherwise, nothing applied; the collective's own errors as it returns them); with no
// buckets and no collective, FAILED_PRECONDITION (use UpdateWeightsStream). UpdateWeightsStream: the first chunk must
// carry the manifest (INVALID_ARGUMENT for an empty stream, a first chunk without one, or a later chunk whose manifest
// has another version; WeightAssembler's codes for the chunks; CANCELLED when the client cancelled).
// Both: ApplyWeightUpdate's codes (INVALID_ARGUMENT for a bad manifest or chunk, DATA_LOSS for a checksum mismatch
// or missing bytes, FAILED_PRECONDITION for a stale version), RESOURCE_EXHAUSTED over Options::max_update_bytes (and,
// for UpdateWeights, for a manifest over 64 MiB). GetInfo always returns OK.
//
// Thread safety: thread-safe; the engine serialises generation and swaps weights between Generate calls.
#ifndef ALIGND_ROLLOUT_SERVICE_H_
#define ALIGND_ROLLOUT_SERVICE_H_

#include <cstdint>
#include <string>

#include "absl/synchronization/mutex.h"
#include "proto/alignd.grpc.pb.h"
#include "rollout/engine.h"
#include "rollout/weight_update.h"

namespace alignd::rollout {

class RolloutService final : public alignd::v1::Rollout::Service {
 public:
  struct Options {
    std::string model_name;                         // reported by GetInfo (e.g. the model folder)
    int64_t max_request_rows = 1024;                // prompts x n per Generate call at most
    int64_t default_max_new_tokens = 128;           // when a request leaves max_new_tokens 0
    uint64_t max_update_bytes = uint64_t{1} << 34;  // total bucket bytes one weight update may carry (16 GiB)
    // Where an UpdateWeights without inline bytes receives them (e.g. a WeightBroadcastGroup joined as a receiving
    // rank). Not owned; must outlive the service. nullptr (default): none.
    WeightSource* collective = nullptr;
    // Adapters attached to the engine's model whose tensors a weight update may replace (a manifest naming one);
    // not owned; nullptr (default): none, and such a manifest is NOT_FOUND.
    const AdapterTargets* adapters = nullptr;
    // GenerateStream answers this many prompts per message (>= 1).
    int64_t stream_part_prompts = 8;
  };
  // `engine` must outlive the service.
  RolloutService(Engine* engine, Options options) : engine_(engine), options_(std::move(options)) {}

  // The RPCs; their status codes beyond the proto's are listed at the top of this file.
  grpc::Status Generate(grpc::ServerContext* context, const alignd::v1::GenerateRequest* request,
                        alignd::v1::GenerateResponse* response) override;
  grpc::Status GenerateStream(grpc::ServerContext* context, const alignd::v1::GenerateRequest* request,
                              grpc::ServerWriter<alignd::v1::GenerateResponse>* writer) override;
  grpc::Status UpdateWeights(grpc::ServerContext* context, const alignd::v1::UpdateWeightsRequest* request,
                             alignd::v1::UpdateWeightsResponse* response) override;
  grpc::Status UpdateWeightsStream(grpc::ServerContext* context, grpc::ServerReader<alignd::v1::WeightChunk>* reader,
                                   alignd::v1::UpdateWeightsResponse* response) override;
  grpc::Status GetInfo(grpc::ServerContext* context, const alignd::v1::GetInfoRequest* request,
                       alignd::v1::RolloutInfo* response) override;

 private:
  // An UpdateWeights announcement's checks, before any byte is received (RESOURCE_EXHAUSTED past the limits).
  absl::Status CheckAnnouncement(const alignd::v1::WeightManifest& manifest) const;
  // The request's checks; returns its prompt count and fills `params`.
  absl::StatusOr<int64_t> CheckGenerate(const alignd::v1::GenerateRequest& request, SamplingParams* params) const;
  // Samples for prompts [begin, end) of the request (prompt_index relative to begin).
  absl::StatusOr<std::vector<Sample>> GenerateRange(const alignd::v1::GenerateRequest& request,
                                                    const SamplingParams& params, int64_t begin, int64_t end);

  Engine* const engine_;
  const Options options_;
  absl::Mutex collective_mu_;  // one collective receive at a time
};

// The engine's SamplingParams for a request's, with the proto3 defaults above.
SamplingParams FromProto(const alignd::v1::SamplingParams& params, int64_t default_max_new_tokens);

}  // namespace alignd::rollout

#endif  // ALIGND_ROLLOUT_SERVICE_H_
