// alignd.v1.Rollout over an in-process gRPC server with a tiny model: generation, info, and weight updates
// (inline and chunked), with every bad request answered by its own status code and leaving the weights alone.
#include "rollout/service.h"

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "common/model/model_config.h"
#include "common/model/peft.h"
#include "common/model/transformer.h"
#include "common/text/tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rollout/weight_client.h"
#include "rollout/weight_update.h"

namespace alignd::rollout {
namespace {

using ::testing::HasSubstr;

CausalLM TinyModel(uint64_t seed) {
  ModelConfig c = TinyLlamaConfig(261, 32, 2, 4, 2, 96);
  c.tie_word_embeddings = false;  // varied greedy continuations (see engine_test)
  CausalLM model(c);
  model->InitWeights(seed);
  return model;
}

std::vector<std::pair<std::string, at::Tensor>> Params(CausalLM& model) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& p : model->named_parameters()) out.emplace_back(p.key(), p.value());
  return out;
}

std::unique_ptr<Engine> MakeEngine(CausalLM model) {
  Engine::Options options;
  options.model = std::move(model);
  options.tokenizer = std::shared_ptr<const Tokenizer>(MakeByteTokenizer());
  auto engine = Engine::Create(std::move(options));
  EXPECT_TRUE(engine.ok()) << engine.status();
  return engine.ok() ? std::move(engine).value() : nullptr;
}

// Hands out the versions queued in `versions`, as a collective group's receiving rank would.
class FakeWeightSource : public WeightSource {
 public:
  absl::StatusOr<PackedWeights> Receive() override {
    if (versions.empty()) return absl::UnavailableError("fake collective: nothing sent");
    PackedWeights next = std::move(versions.front());
    versions.erase(versions.begin());
    return next;
  }
  std::vector<PackedWeights> versions;
};

class RolloutServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    engine_ = MakeEngine(TinyModel(1));
    ASSERT_NE(engine_, nullptr);
    RolloutService::Options options;
    options.model_name = "tiny";
    options.max_request_rows = 4;
    if (with_collective_) options.collective = &source_;
    adapters_["job"]["base_model.model.lora_A.weight"] = torch::zeros({2, 3});
    options.adapters = &adapters_;
    options.stream_part_prompts = 2;
    service_ = std::make_unique<RolloutService>(engine_.get(), options);
    grpc::ServerBuilder builder;
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = alignd::v1::Rollout::NewStub(server_->InProcessChannel(grpc::ChannelArguments()));
  }
  void TearDown() override { server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5)); }

  static void SetDeadline(grpc::ClientContext* context) {
    context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  }

  static alignd::v1::GenerateRequest Greedy(std::vector<std::string> prompts, uint32_t n = 1) {
    alignd::v1::GenerateRequest request;
    for (std::string& p : prompts) request.add_prompts(std::move(p));
    request.mutable_sampling()->set_temperature(0);
    request.mutable_sampling()->set_max_new_tokens(8);
    request.mutable_sampling()->set_n(n);
    return request;
  }

  grpc::Status Generate(const alignd::v1::GenerateRequest& request, alignd::v1::GenerateResponse* response) {
    grpc::ClientContext context;
    SetDeadline(&context);
    return stub_->Generate(&context, request, response);
  }

  // Greedy token ids for a fixed prompt, via the service.
  std::vector<int32_t> GreedyIds() {
    alignd::v1::GenerateResponse response;
    grpc::Status status = Generate(Greedy({"hello there"}), &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    if (response.samples_size() != 1) return {};
    return {response.samples(0).token_ids().begin(), response.samples(0).token_ids().end()};
  }

  grpc::Status UpdateInline(const PackedWeights& packed) {
    alignd::v1::UpdateWeightsRequest request;
    *request.mutable_manifest() = packed.manifest;
    for (const std::string& b : packed.buckets) request.add_buckets(b);
    alignd::v1::UpdateWeightsResponse response;
    grpc::ClientContext context;
    SetDeadline(&context);
    return stub_->UpdateWeights(&context, request, &response);
  }

  // Streams the buckets in chunks of `chunk` bytes, the manifest on the first message.
  grpc::Status UpdateStream(const PackedWeights& packed, size_t chunk, uint64_t* version = nullptr) {
    alignd::v1::UpdateWeightsResponse response;
    grpc::ClientContext context;
    SetDeadline(&context);
    auto writer = stub_->UpdateWeightsStream(&context, &response);
    alignd::v1::WeightChunk first;
    *first.mutable_manifest() = packed.manifest;
    writer->Write(first);
    for (size_t b = 0; b < packed.buckets.size(); ++b) {
      for (size_t off = 0; off < packed.buckets[b].size(); off += chunk) {
        alignd::v1::WeightChunk c;
        c.set_bucket(static_cast<uint32_t>(b));
        c.set_offset(off);
        c.set_data(packed.buckets[b].substr(off, chunk));
        if (!writer->Write(c)) break;
      }
    }
    writer->WritesDone();
    grpc::Status status = writer->Finish();
    if (version != nullptr) *version = response.version();
    return status;
  }

  // Model 2's weights as version 1, in buckets of 16 KiB.
  PackedWeights Packed() {
    auto packed = PackWeights(Params(other_), 1, 16 << 10);
    EXPECT_TRUE(packed.ok()) << packed.status();
    EXPECT_GT(packed->buckets.size(), 1u);
    return *packed;
  }

  // Greedy ids of an engine that holds model 2 from the start.
  std::vector<int32_t> OtherModelIds() {
    auto engine = MakeEngine(other_);
    SamplingParams p;
    p.temperature = 0;
    p.max_new_tokens = 8;
    auto samples = engine->GenerateText({"hello there"}, p);
    EXPECT_TRUE(samples.ok()) << samples.status();
    return samples.ok() ? (*samples)[0].token_ids : std::vector<int32_t>{};
  }

  // After a rejected update: version 0 and the original greedy output.
  void ExpectUnchanged(const std::vector<int32_t>& before) {
    EXPECT_EQ(engine_->weight_version(), 0u);
    EXPECT_EQ(GreedyIds(), before);
  }

  CausalLM other_ = TinyModel(2);
  bool with_collective_ = false;
  FakeWeightSource source_;
  AdapterTargets adapters_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<RolloutService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<alignd::v1::Rollout::Stub> stub_;
};

TEST_F(RolloutServiceTest, GetInfoReportsModelVersionAndLimits) {
  alignd::v1::RolloutInfo info;
  grpc::ClientContext context;
  SetDeadline(&context);
  ASSERT_TRUE(stub_->GetInfo(&context, alignd::v1::GetInfoRequest(), &info).ok());
  EXPECT_EQ(info.model(), "tiny");
  EXPECT_EQ(info.weight_version(), 0u);
  EXPECT_EQ(info.chat_template(), "chatml");
  EXPECT_EQ(info.max_request_rows(), 4u);
}

TEST_F(RolloutServiceTest, NamedAdaptersAreChosenPerRequestOnOneBase) {
  // An adapter with a non-zero B, saved in the PEFT layout and loaded under a name.
  CausalLM scratch = TinyModel(1);
  LoraConfig config;
  config.target_modules = {"all-linear"};
  config.r = 4;
  auto lora = PeftModel::CreateLora(scratch, config);
  ASSERT_TRUE(lora.ok()) << lora.status();
  {
    torch::NoGradGuard no_grad;
    for (auto& [name, t] : (*lora)->named_parameters()) {
      if (name.find("lora_B") != std::string::npos) t.normal_(0, 0.5);
    }
  }
  const std::string dir = ::testing::TempDir() + "/service_test_adapter";
  ASSERT_TRUE((*lora)->Save(dir).ok());
  const std::vector<int32_t> base = GreedyIds();
  ASSERT_TRUE(engine_->LoadAdapter("math", dir).ok());
  EXPECT_EQ(engine_->LoadAdapter("math", dir).code(), absl::StatusCode::kInvalidArgument);  // the name is taken

  alignd::v1::GenerateRequest request = Greedy({"hello there"});
  request.set_adapter("math");
  alignd::v1::GenerateResponse with;
  ASSERT_TRUE(Generate(request, &with).ok());
  ASSERT_EQ(with.samples_size(), 1);
  // The same answer as a model that has the adapter attached for good.
  std::unique_ptr<Engine> reference = MakeEngine(scratch);
  auto expected = reference->GenerateText({"hello there"}, FromProto(request.sampling(), 128));
  ASSERT_TRUE(expected.ok()) << expected.status();
  EXPECT_EQ(std::vector<int32_t>(with.samples(0).token_ids().begin(), with.samples(0).token_ids().end()),
            (*expected)[0].token_ids);
  EXPECT_NE((*expected)[0].token_ids, base);
  EXPECT_EQ(GreedyIds(), base);  // a request without an adapter still gets the base
  alignd::v1::RolloutInfo info;
  grpc::ClientContext context;
  SetDeadline(&context);
  ASSERT_TRUE(stub_->GetInfo(&context, alignd::v1::GetInfoRequest(), &info).ok());
  ASSERT_EQ(info.adapters_size(), 1);
  EXPECT_EQ(info.adapters(0), "math");
}

TEST_F(RolloutServiceTest, GenerateStreamAnswersInPartsWithTheRequestsIndices) {
  // Sampled: every row of every part draws what it draws in the unary call (the same seed, its index in the request).
  alignd::v1::GenerateRequest request = Greedy({"a", "bb", "ccc"});
  request.mutable_sampling()->set_temperature(1);
  request.mutable_sampling()->set_seed(11);
  alignd::v1::GenerateResponse whole;
  ASSERT_TRUE(Generate(request, &whole).ok());
  ASSERT_EQ(whole.samples_size(), 3);
  grpc::ClientContext context;
  SetDeadline(&context);
  auto reader = stub_->GenerateStream(&context, request);
  alignd::v1::GenerateResponse part;
  std::vector<alignd::v1::Sample> streamed;
  int parts = 0;
  while (reader->Read(&part)) {
    ++parts;
    for (const auto& s : part.samples()) streamed.push_back(s);
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(parts, 2);  // 2 prompts, then 1
  ASSERT_EQ(streamed.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(streamed[i].prompt_index(), static_cast<uint32_t>(i));
    // The same tokens, text and finish. The log-probs come from batches of another shape (2 + 1 prompts against 3),
    // whose products may be summed in another order: equal to float32 rounding, not bit for bit.
    const alignd::v1::Sample& want = whole.samples(i);
    EXPECT_EQ(std::vector<int32_t>(streamed[i].token_ids().begin(), streamed[i].token_ids().end()),
              std::vector<int32_t>(want.token_ids().begin(), want.token_ids().end()))
        << "prompt " << i;
    EXPECT_EQ(streamed[i].text(), want.text());
    EXPECT_EQ(streamed[i].finish_reason(), want.finish_reason());
    EXPECT_EQ(streamed[i].sample_index(), want.sample_index());
    EXPECT_EQ(streamed[i].weight_version(), want.weight_version());
    ASSERT_EQ(streamed[i].logprobs_size(), want.logprobs_size());
    for (int t = 0; t < want.logprobs_size(); ++t) {
      EXPECT_NEAR(streamed[i].logprobs(t), want.logprobs(t), 1e-4 + 1e-4 * std::abs(want.logprobs(t))) << t;
    }
  }
  // Errors come back as the stream's status.
  grpc::ClientContext bad_context;
  SetDeadline(&bad_context);
  alignd::v1::GenerateRequest bad = Greedy({"a"});
  bad.set_adapter("nope");
  auto bad_reader = stub_->GenerateStream(&bad_context, bad);
  while (bad_reader->Read(&part)) {
  }
  EXPECT_EQ(bad_reader->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(RolloutServiceTest, GenerateReturnsEverySampleWithLogprobsAndVersion) {
  alignd::v1::GenerateResponse response;
  grpc::Status status = Generate(Greedy({"a", "bb"}, 2), &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(response.samples_size(), 4);
  for (int i = 0; i < 4; ++i) {
    const alignd::v1::Sample& s = response.samples(i);
    EXPECT_EQ(s.prompt_index(), static_cast<uint32_t>(i / 2));
    EXPECT_EQ(s.sample_index(), static_cast<uint32_t>(i % 2));
    EXPECT_EQ(s.logprobs_size(), s.token_ids_size());
    EXPECT_EQ(s.sampling_logprobs_size(), s.token_ids_size());
    EXPECT_EQ(s.weight_version(), 0u);
    EXPECT_THAT(s.finish_reason(), ::testing::AnyOf("stop", "length"));
  }
}

TEST_F(RolloutServiceTest, SameSeedSameSamples) {
  alignd::v1::GenerateRequest request = Greedy({"seeded"}, 2);
  request.mutable_sampling()->set_temperature(1.0);
  request.mutable_sampling()->set_seed(7);
  alignd::v1::GenerateResponse a, b;
  ASSERT_TRUE(Generate(request, &a).ok());
  ASSERT_TRUE(Generate(request, &b).ok());
  EXPECT_EQ(a.SerializeAsString(), b.SerializeAsString());
}

TEST_F(RolloutServiceTest, StreamedUpdateSwapsWeightsAndVersion) {
  std::vector<int32_t> before = GreedyIds();
  std::vector<int32_t> expected = OtherModelIds();
  ASSERT_NE(before, expected);  // else the test could not tell the models apart
  uint64_t version = 0;
  grpc::Status status = UpdateStream(Packed(), 1000, &version);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(version, 1u);
  alignd::v1::GenerateResponse response;
  ASSERT_TRUE(Generate(Greedy({"hello there"}), &response).ok());
  EXPECT_EQ(std::vector<int32_t>(response.samples(0).token_ids().begin(), response.samples(0).token_ids().end()),
            expected);
  EXPECT_EQ(response.samples(0).weight_version(), 1u);
}

TEST_F(RolloutServiceTest, InlineUpdateSwapsWeights) {
  std::vector<int32_t> expected = OtherModelIds();
  grpc::Status status = UpdateInline(Packed());
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(engine_->weight_version(), 1u);
  EXPECT_EQ(GreedyIds(), expected);
}

TEST_F(RolloutServiceTest, PartialUpdateTouchesOnlyItsTensors) {
  auto params = Params(other_);
  auto packed = PackWeights({params.back()}, 1, 1 << 20);
  ASSERT_TRUE(packed.ok());
  ASSERT_TRUE(UpdateInline(*packed).ok());
  EXPECT_EQ(engine_->weight_version(), 1u);
}

// --- Bad requests ---

TEST_F(RolloutServiceTest, EmptyBatchIsInvalidArgument) {
  alignd::v1::GenerateResponse response;
  EXPECT_EQ(Generate(Greedy({}), &response).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(RolloutServiceTest, UnknownAdapterIsNotFound) {
  alignd::v1::GenerateRequest request = Greedy({"a"});
  request.set_adapter("math-lora");
  alignd::v1::GenerateResponse response;
  grpc::Status status = Generate(request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr("math-lora"));
}

TEST_F(RolloutServiceTest, OversizedRequestIsInvalidArgument) {
  alignd::v1::GenerateResponse response;
  EXPECT_EQ(Generate(Greedy({"a", "b", "c"}, 2), &response).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(RolloutServiceTest, BadSamplingIsInvalidArgument) {
  alignd::v1::GenerateRequest request = Greedy({"a"});
  request.mutable_sampling()->set_temperature(-1);
  alignd::v1::GenerateResponse response;
  EXPECT_EQ(Generate(request, &response).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(RolloutServiceTest, ChecksumMismatchIsDataLossAndAppliesNothing) {
  std::vector<int32_t> before = GreedyIds();
  PackedWeights packed = Packed();
  packed.buckets[1][3] ^= 0x40;
  EXPECT_EQ(UpdateStream(packed, 1000).error_code(), grpc::StatusCode::DATA_LOSS);
  ExpectUnchanged(before);
}

TEST_F(RolloutServiceTest, ChecksumAlgorithms) {
  // What PackWeights writes: XXH3-128, 32 hex digits, the canonical (big-endian) form xxhsum -H2 prints.
  PackedWeights packed = Packed();
  EXPECT_EQ(packed.manifest.checksum_algorithm(), "xxh3-128");
  EXPECT_EQ(packed.manifest.checksum().size(), 32u);
  EXPECT_EQ(BucketsChecksum({"abc"}, "xxh3-128"), "06b05ab6733a618578af5f94892f3950");
  EXPECT_EQ(BucketsChecksum({"ab", "c"}, "xxh3-128"), BucketsChecksum({"abc"}, "xxh3-128"));  // over the concatenation
  EXPECT_EQ(BucketsChecksum({"abc"}, ""), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

  // A manifest from before the field (empty = SHA-256) is still applied.
  std::vector<int32_t> before = GreedyIds();
  PackedWeights old = Packed();
  old.manifest.clear_checksum_algorithm();
  old.manifest.set_checksum(BucketsChecksum(old.buckets, ""));
  EXPECT_TRUE(UpdateStream(old, 1000).ok());
  EXPECT_NE(GreedyIds(), before);

  // An unknown algorithm, or a digest of the wrong length, is INVALID_ARGUMENT naming the field; nothing changes.
  std::vector<int32_t> now = GreedyIds();
  PackedWeights unknown = Packed();
  unknown.manifest.set_version(2);
  unknown.manifest.set_checksum_algorithm("md5");
  grpc::Status status = UpdateStream(unknown, 1000);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("checksum_algorithm"));
  PackedWeights short_digest = Packed();
  short_digest.manifest.set_version(2);
  short_digest.manifest.set_checksum(std::string(64, 'a'));
  status = UpdateStream(short_digest, 1000);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("32 hex digits"));
  EXPECT_EQ(engine_->weight_version(), 1u);
  EXPECT_EQ(GreedyIds(), now);
}

TEST_F(RolloutServiceTest, MissingBytesAreDataLoss) {
  std::vector<int32_t> before = GreedyIds();
  PackedWeights packed = Packed();
  packed.buckets.back().resize(packed.buckets.back().size() - 4);  // the stream ends short of the manifest
  EXPECT_EQ(UpdateStream(packed, 1000).error_code(), grpc::StatusCode::DATA_LOSS);
  ExpectUnchanged(before);
}

TEST_F(RolloutServiceTest, UnknownTensorIsInvalidArgument) {
  std::vector<int32_t> before = GreedyIds();
  PackedWeights packed = Packed();
  packed.manifest.mutable_tensors(0)->set_name("model.not_a_layer.weight");
  grpc::Status status = UpdateStream(packed, 1000);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("not_a_layer"));
  ExpectUnchanged(before);
}

TEST_F(RolloutServiceTest, ShapeMismatchIsInvalidArgument) {
  std::vector<int32_t> before = GreedyIds();
  PackedWeights packed = Packed();
  alignd::v1::TensorEntry* t = packed.manifest.mutable_tensors(0);  // [261, 32] embedding, same bytes as [32, 261]
  ASSERT_EQ(t->shape_size(), 2);
  int64_t rows = t->shape(0);
  t->set_shape(0, t->shape(1));
  t->set_shape(1, rows);
  EXPECT_EQ(UpdateStream(packed, 1000).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  ExpectUnchanged(before);
}

TEST_F(RolloutServiceTest, DtypeMismatchIsInvalidArgument) {
  PackedWeights packed = Packed();
  packed.manifest.mutable_tensors(0)->set_dtype("BF16");  // nbytes no longer equals shape x dtype
  EXPECT_EQ(UpdateStream(packed, 1000).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  packed.manifest.mutable_tensors(0)->set_dtype("I64");
  EXPECT_EQ(UpdateStream(packed, 1000).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(engine_->weight_version(), 0u);
}

TEST_F(RolloutServiceTest, OffsetOutOfRangeIsInvalidArgument) {
  PackedWeights packed = Packed();
  packed.manifest.mutable_tensors(0)->set_offset(packed.manifest.bucket_bytes(0));
  EXPECT_EQ(UpdateStream(packed, 1000).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(engine_->weight_version(), 0u);
}

TEST_F(RolloutServiceTest, OverlappingTensorsAreInvalidArgument) {
  PackedWeights packed = Packed();
  int i = 1;
  while (i < packed.manifest.tensors_size() &&
         packed.manifest.tensors(i).bucket() != packed.manifest.tensors(i - 1).bucket())
    ++i;
  ASSERT_LT(i, packed.manifest.tensors_size());
  packed.manifest.mutable_tensors(i)->set_offset(packed.manifest.tensors(i - 1).offset());
  EXPECT_EQ(UpdateStream(packed, 1000).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(RolloutServiceTest, ChunkPastBucketEndIsInvalidArgument) {
  PackedWeights packed = Packed();
  packed.buckets[0] += "xx";
  EXPECT_EQ(UpdateStream(packed, 1 << 20).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(RolloutServiceTest, StaleVersionIsFailedPrecondition) {
  ASSERT_TRUE(UpdateInline(Packed()).ok());
  EXPECT_EQ(UpdateInline(Packed()).error_code(), grpc::StatusCode::FAILED_PRECONDITION);  // version 1 again
}

TEST_F(RolloutServiceTest, AdapterUpdateIsNotFound) {
  PackedWeights packed = Packed();
  packed.manifest.set_adapter("math-lora");
  EXPECT_EQ(UpdateInline(packed).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(RolloutServiceTest, AdapterUpdateReplacesOnlyTheNamedAdaptersTensors) {
  std::vector<int32_t> before = GreedyIds();
  auto packed = PackWeights({{"base_model.model.lora_A.weight", torch::ones({2, 3})}}, 1, 1 << 20);
  ASSERT_TRUE(packed.ok());
  packed->manifest.set_adapter("job");
  grpc::Status status = UpdateInline(*packed);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(engine_->weight_version(), 1u);
  EXPECT_TRUE(torch::equal(adapters_["job"]["base_model.model.lora_A.weight"], torch::ones({2, 3})));
  EXPECT_EQ(GreedyIds(), before);  // the base weights are untouched
  // A tensor the adapter does not have, or a base tensor sent as the adapter's, applies nothing.
  PackedWeights base = Packed();
  base.manifest.set_adapter("job");
  base.manifest.set_version(2);
  EXPECT_EQ(UpdateInline(base).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(engine_->weight_version(), 1u);
}

TEST_F(RolloutServiceTest, UpdateWithoutBytesOrGroupIsFailedPrecondition) {
  alignd::v1::UpdateWeightsRequest request;
  *request.mutable_manifest() = Packed().manifest;
  alignd::v1::UpdateWeightsResponse response;
  grpc::ClientContext context;
  SetDeadline(&context);
  EXPECT_EQ(stub_->UpdateWeights(&context, request, &response).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_F(RolloutServiceTest, StreamWithoutManifestIsInvalidArgument) {
  alignd::v1::UpdateWeightsResponse response;
  grpc::ClientContext context;
  SetDeadline(&context);
  auto writer = stub_->UpdateWeightsStream(&context, &response);
  alignd::v1::WeightChunk chunk;
  chunk.set_data("abc");
  writer->Write(chunk);
  writer->WritesDone();
  EXPECT_EQ(writer->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

// --- The learner's client (rollout/weight_client.h) ---

TEST_F(RolloutServiceTest, PushWeightsStreamsAVersion) {
  std::vector<int32_t> expected = OtherModelIds();
  PushOptions options;
  options.chunk_bytes = 777;  // not a divisor of any bucket
  auto version = PushWeights(*stub_, Packed(), options);
  ASSERT_TRUE(version.ok()) << version.status();
  EXPECT_EQ(*version, 1u);
  EXPECT_EQ(GreedyIds(), expected);
}

TEST_F(RolloutServiceTest, PushWeightsReportsTheWorkersError) {
  PackedWeights packed = Packed();
  packed.manifest.set_checksum(std::string(32, '0'));  // right length (XXH3-128), wrong digest
  EXPECT_EQ(PushWeights(*stub_, packed).status().code(), absl::StatusCode::kDataLoss);
  PackedWeights unknown = Packed();
  unknown.manifest.mutable_tensors(0)->set_name("nope");  // unknown to the model
  EXPECT_EQ(PushWeights(*stub_, unknown).status().code(), absl::StatusCode::kInvalidArgument);
  PushOptions zero;
  zero.chunk_bytes = 0;
  EXPECT_EQ(PushWeights(*stub_, Packed(), zero).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(engine_->weight_version(), 0u);
}

// --- Bytes over a collective group ---

class RolloutServiceCollectiveTest : public RolloutServiceTest {
 protected:
  RolloutServiceCollectiveTest() { with_collective_ = true; }

  grpc::Status Announce(const alignd::v1::WeightManifest& manifest) {
    alignd::v1::UpdateWeightsRequest request;
    *request.mutable_manifest() = manifest;
    alignd::v1::UpdateWeightsResponse response;
    grpc::ClientContext context;
    SetDeadline(&context);
    return stub_->UpdateWeights(&context, request, &response);
  }
};

TEST_F(RolloutServiceCollectiveTest, AnnouncedVersionIsReceivedAndSwapped) {
  std::vector<int32_t> expected = OtherModelIds();
  PackedWeights packed = Packed();
  source_.versions.push_back(packed);
  grpc::Status status = Announce(packed.manifest);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(engine_->weight_version(), 1u);
  EXPECT_EQ(GreedyIds(), expected);
}

TEST_F(RolloutServiceCollectiveTest, DifferentManifestOnTheWireIsAborted) {
  std::vector<int32_t> before = GreedyIds();
  PackedWeights packed = Packed();
  source_.versions.push_back(packed);
  alignd::v1::WeightManifest announced = packed.manifest;
  announced.set_version(2);
  EXPECT_EQ(Announce(announced).error_code(), grpc::StatusCode::ABORTED);
  ExpectUnchanged(before);
}

TEST_F(RolloutServiceCollectiveTest, CorruptedBroadcastIsDataLoss) {
  std::vector<int32_t> before = GreedyIds();
  PackedWeights packed = Packed();
  packed.buckets[0][0] ^= 0x01;
  source_.versions.push_back(packed);
  EXPECT_EQ(Announce(packed.manifest).error_code(), grpc::StatusCode::DATA_LOSS);
  ExpectUnchanged(before);
}

TEST_F(RolloutServiceCollectiveTest, FailedReceiveIsUnavailable) {
  EXPECT_EQ(Announce(Packed().manifest).error_code(), grpc::StatusCode::UNAVAILABLE);
}

}  // namespace
}  // namespace alignd::rollout
