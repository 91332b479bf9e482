#include "rollout/service.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/base/status.h"
#include "common/metrics/prometheus.h"
#include "common/rpc/grpc_status.h"
#include "rollout/weight_update.h"

namespace alignd::rollout {

SamplingParams FromProto(const alignd::v1::SamplingParams& p, int64_t default_max_new_tokens) {
  SamplingParams out;
  out.temperature = p.temperature();
  out.top_k = p.top_k();
  out.top_p = p.top_p() == 0 ? 1.0 : p.top_p();
  out.max_new_tokens = p.max_new_tokens() == 0 ? default_max_new_tokens : p.max_new_tokens();
  out.min_new_tokens = p.min_new_tokens();
  if (p.stop_token_ids_size() > 0)
    out.stop_token_ids = std::vector<int32_t>(p.stop_token_ids().begin(), p.stop_token_ids().end());
  out.stop_strings.assign(p.stop_strings().begin(), p.stop_strings().end());
  out.n = p.n() == 0 ? 1 : p.n();
  out.seed = p.seed();
  out.first_prompt_index = p.first_prompt_index();
  return out;
}

namespace {

void AddSamples(const std::vector<Sample>& samples, int64_t prompt_offset, alignd::v1::GenerateResponse* response) {
  for (const Sample& s : samples) {
    alignd::v1::Sample* out = response->add_samples();
    out->set_prompt_index(static_cast<uint32_t>(s.prompt_index + prompt_offset));
    out->set_sample_index(static_cast<uint32_t>(s.sample_index));
    out->mutable_token_ids()->Add(s.token_ids.begin(), s.token_ids.end());
    out->set_text(s.text);  // valid UTF-8, as proto3 strings must be (Sample::text)
    out->mutable_logprobs()->Add(s.logprobs.begin(), s.logprobs.end());
    out->mutable_sampling_logprobs()->Add(s.sampling_logprobs.begin(), s.sampling_logprobs.end());
    out->set_finish_reason(std::string(FinishReasonName(s.finish_reason)));
    out->set_weight_version(s.weight_version);
  }
}

constexpr size_t kMaxManifestBytes = 64 << 20;

absl::Status ManifestTooLarge(const alignd::v1::WeightManifest& manifest) {
  return absl::ResourceExhaustedError(absl::StrCat("manifest: ", manifest.ByteSizeLong(), " bytes (",
                                                   manifest.tensors_size(), " tensors) exceed the limit of ",
                                                   kMaxManifestBytes));
}

}  // namespace

absl::Status RolloutService::CheckAnnouncement(const alignd::v1::WeightManifest& manifest) const {
  if (manifest.ByteSizeLong() > kMaxManifestBytes) return ManifestTooLarge(manifest);
  uint64_t total = 0;
  for (uint64_t b : manifest.bucket_bytes()) {
    if (b > options_.max_update_bytes - std::min(total, options_.max_update_bytes)) {
      return absl::ResourceExhaustedError(
          absl::StrCat("manifest: its buckets exceed the limit of ", options_.max_update_bytes, " bytes"));
    }
    total += b;
  }
  return CheckAnnouncedUpdate(*engine_, manifest, options_.adapters);
}

absl::StatusOr<int64_t> RolloutService::CheckGenerate(const alignd::v1::GenerateRequest& request,
                                                      SamplingParams* params) const {
  if (request.prompts_size() > 0 && request.prompt_token_ids_size() > 0) {
    return absl::InvalidArgumentError("prompts and prompt_token_ids: give one or the other, not both");
  }
  *params = FromProto(request.sampling(), options_.default_max_new_tokens);
  const int64_t count = std::max(request.prompts_size(), request.prompt_token_ids_size());
  if (count == 0) return absl::InvalidArgumentError("prompts: the request has none");
  const int64_t rows = count * params->n;
  if (rows > options_.max_request_rows) {
    return absl::InvalidArgumentError(absl::StrCat("prompts x n = ", rows, " exceeds the limit of ",
                                                   options_.max_request_rows, "; split the request"));
  }
  return count;
}

absl::StatusOr<std::vector<Sample>> RolloutService::GenerateRange(const alignd::v1::GenerateRequest& request,
                                                                  const SamplingParams& params, int64_t begin,
                                                                  int64_t end) {
  // The requests waiting for or in generation (the engine runs one at a time), and the tokens generated.
  metrics::Registry& registry = metrics::Registry::Default();
  static constexpr char kQueued[] = "alignd_rollout_requests_in_flight";
  static constexpr char kQueuedHelp[] = "Generate requests this process's rollout servers hold, waiting or generating.";
  registry.GaugeAdd(kQueued, kQueuedHelp, {}, 1);
  absl::StatusOr<std::vector<Sample>> samples;
  SamplingParams range_params = params;  // rows [begin, end) draw as they would in the whole request
  range_params.first_prompt_index += begin;
  if (request.prompt_token_ids_size() > 0) {
    std::vector<std::vector<int32_t>> ids;
    for (int64_t i = begin; i < end; ++i) {
      const auto& p = request.prompt_token_ids(static_cast<int>(i)).ids();
      ids.emplace_back(p.begin(), p.end());
    }
    samples = engine_->Generate(ids, range_params, nullptr, request.adapter());
  } else {
    std::vector<std::string> prompts(request.prompts().begin() + begin, request.prompts().begin() + end);
    samples = engine_->GenerateText(prompts, range_params, nullptr, request.adapter());
  }
  registry.GaugeAdd(kQueued, kQueuedHelp, {}, -1);
  if (samples.ok()) {
    double tokens = 0;
    for (const Sample& s : *samples) tokens += static_cast<double>(s.token_ids.size());
    registry.CounterAdd("alignd_rollout_generated_tokens_total",
                        "Tokens the rollout servers of this process generated.", {}, tokens);
  }
  return samples;
}

grpc::Status RolloutService::Generate(grpc::ServerContext* context, const alignd::v1::GenerateRequest* request,
                                      alignd::v1::GenerateResponse* response) {
  return HandleRpc([&]() -> absl::Status {
    SamplingParams params;
    ASSIGN_OR_RETURN(int64_t count, CheckGenerate(*request, &params));
    ASSIGN_OR_RETURN(std::vector<Sample> samples, GenerateRange(*request, params, 0, count));
    AddSamples(samples, 0, response);
    return absl::OkStatus();
  });
}

grpc::Status RolloutService::GenerateStream(grpc::ServerContext* context, const alignd::v1::GenerateRequest* request,
                                            grpc::ServerWriter<alignd::v1::GenerateResponse>* writer) {
  return HandleRpc([&]() -> absl::Status {
    SamplingParams params;
    ASSIGN_OR_RETURN(int64_t count, CheckGenerate(*request, &params));
    // Each part is generated as its own call (its samples carry the weight version that made them); the prompt
    // indices are the request's.
    const int64_t part = std::max<int64_t>(1, options_.stream_part_prompts);
    for (int64_t begin = 0; begin < count; begin += part) {
      if (context->IsCancelled()) return absl::CancelledError("the client went away");
      const int64_t end = std::min(count, begin + part);
      ASSIGN_OR_RETURN(std::vector<Sample> samples, GenerateRange(*request, params, begin, end));
      alignd::v1::GenerateResponse response;
      AddSamples(samples, begin, &response);
      if (!writer->Write(response)) return absl::CancelledError("the client went away");
    }
    return absl::OkStatus();
  });
}

grpc::Status RolloutService::UpdateWeights(grpc::ServerContext* context,
                                           const alignd::v1::UpdateWeightsRequest* request,
                                           alignd::v1::UpdateWeightsResponse* response) {
  return HandleRpc([&]() -> absl::Status {
    if (request->buckets_size() == 0) {
      if (options_.collective == nullptr) {
        return absl::FailedPreconditionError(
            "UpdateWeights without inline buckets needs a collective group, and none is attached to this server; "
            "send the bytes with UpdateWeightsStream");
      }
      // Everything that can be checked before the bytes is checked first: a bad announcement must not take the
      // broadcast that the next good one is waiting for.
      RETURN_IF_ERROR(CheckAnnouncement(request->manifest()));
      absl::MutexLock lock(&collective_mu_);
      ASSIGN_OR_RETURN(PackedWeights received, options_.collective->Receive());
      if (received.manifest.SerializeAsString() != request->manifest().SerializeAsString()) {
        return absl::AbortedError(absl::StrCat("weights: the collective delivered version ",
                                               received.manifest.version(), " but version ",
                                               request->manifest().version(), " was announced; nothing applied"));
      }
      absl::Status status = ApplyWeightUpdate(*engine_, received, options_.adapters);
      options_.collective->Recycle(std::move(received.buckets));  // the next version lands in mapped memory
      RETURN_IF_ERROR(status);
      response->set_version(engine_->weight_version());
      return absl::OkStatus();
    }
    if (request->manifest().ByteSizeLong() > kMaxManifestBytes) return ManifestTooLarge(request->manifest());
    uint64_t total = 0;
    for (const std::string& b : request->buckets()) total += b.size();
    if (total > options_.max_update_bytes) {
      return absl::ResourceExhaustedError(
          absl::StrCat("weights: ", total, " bytes exceed the limit of ", options_.max_update_bytes));
    }
    std::vector<std::string> buckets(request->buckets().begin(), request->buckets().end());
    RETURN_IF_ERROR(ApplyWeightUpdate(*engine_, request->manifest(), buckets, options_.adapters));
    response->set_version(engine_->weight_version());
    return absl::OkStatus();
  });
}

grpc::Status RolloutService::UpdateWeightsStream(grpc::ServerContext* context,
                                                 grpc::ServerReader<alignd::v1::WeightChunk>* reader,
                                                 alignd::v1::UpdateWeightsResponse* response) {
  return HandleRpc([&]() -> absl::Status {
    alignd::v1::WeightChunk chunk;
    if (!reader->Read(&chunk)) return absl::InvalidArgumentError("weights: empty stream");
    if (!chunk.has_manifest()) return absl::InvalidArgumentError("weights: the first chunk must carry the manifest");
    ASSIGN_OR_RETURN(WeightAssembler assembler, WeightAssembler::Start(chunk.manifest(), options_.max_update_bytes));
    do {
      if (chunk.has_manifest() && assembler.manifest().version() != chunk.manifest().version()) {
        return absl::InvalidArgumentError("weights: a later chunk carries a different manifest");
      }
      if (!chunk.data().empty()) RETURN_IF_ERROR(assembler.Add(chunk.bucket(), chunk.offset(), chunk.data()));
    } while (reader->Read(&chunk));
    if (context->IsCancelled()) return absl::CancelledError("weights: stream cancelled");
    ASSIGN_OR_RETURN(std::vector<std::string> buckets, assembler.Finish());
    RETURN_IF_ERROR(ApplyWeightUpdate(*engine_, assembler.manifest(), buckets, options_.adapters));
    response->set_version(engine_->weight_version());
    return absl::OkStatus();
  });
}

grpc::Status RolloutService::GetInfo(grpc::ServerContext* context, const alignd::v1::GetInfoRequest* request,
                                     alignd::v1::RolloutInfo* response) {
  return HandleRpc([&]() -> absl::Status {
    response->set_model(options_.model_name);
    response->set_weight_version(engine_->weight_version());
    response->set_chat_template(engine_->chat_template());
    response->set_max_request_rows(static_cast<uint32_t>(options_.max_request_rows));
    for (const std::string& name : engine_->adapter_names()) response->add_adapters(name);
    return absl::OkStatus();
  });
}

}  // namespace alignd::rollout
