#include "learner/checkpoint.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/nn.h>
#include <torch/optim/adamw.h>
#include <torch/serialize.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "common/base/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace alignd::learner {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// A tiny stand-in for a run: a linear model trained one AdamW step, a value head as the extra parameter, a generator.
struct TinyRun {
  explicit TinyRun(uint64_t seed) : generator(at::detail::createCPUGenerator(seed)) {
    torch::manual_seed(0);  // the test's own process: only the layer's initial weights come from here
    model = torch::nn::Linear(3, 2);
    extra = {torch::zeros({2})};
    optimizer = std::make_unique<torch::optim::AdamW>(model->parameters(), torch::optim::AdamWOptions(0.1));
  }

  void Step() {
    optimizer->zero_grad();
    model->forward(torch::ones({1, 3})).sum().backward();
    optimizer->step();
    torch::NoGradGuard no_grad;
    extra[0].add_(1.0);
  }

  CheckpointParts Parts() {
    CheckpointParts p;
    p.save_model = [this](const std::string& dir) -> absl::Status {
      fs::create_directories(dir);
      torch::save(model, dir + "/model.pt");
      return absl::OkStatus();
    };
    p.load_model = [this](const std::string& dir) -> absl::Status {
      ++models_loaded;
      torch::load(model, dir + "/model.pt");
      return absl::OkStatus();
    };
    p.optimizer = optimizer.get();
    p.extra = extra;
    p.generator = generator;
    return p;
  }

  double Draw() { return torch::rand({1}, generator).item<double>(); }

  torch::nn::Linear model{nullptr};
  std::vector<torch::Tensor> extra;
  std::unique_ptr<torch::optim::AdamW> optimizer;
  at::Generator generator;
  int models_loaded = 0;
};

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    out_ = ::testing::TempDir() + "/checkpoint_" + ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(out_);
  }

  // Saves `run` after `step` with a recognisable state.
  std::string Save(TinyRun& run, int64_t step) {
    TrainerState state;
    state.step = step;
    state.epoch = 2;
    state.position = 5;
    state.algorithm = {{"kl_coef", 0.25}};
    const std::string dir = CheckpointDir(out_, step);
    absl::Status s = SaveCheckpoint(dir, run.Parts(), state);
    EXPECT_TRUE(s.ok()) << s;
    return dir;
  }

  // Replaces trainer_state.json in `dir` with `text`.
  void WriteState(const std::string& dir, const std::string& text) {
    ASSERT_TRUE(WriteFileAtomic(dir + "/trainer_state.json", text).ok());
  }

  absl::Status LoadInto(const std::string& dir, TinyRun& run) {
    return LoadCheckpoint(dir, run.Parts(), c10::kCPU).status();
  }

  std::string out_;
};

TEST_F(CheckpointTest, RoundTripsEveryPart) {
  TinyRun a(7);
  a.Step();
  a.Draw();
  const std::string dir = Save(a, 3);
  EXPECT_EQ(dir, out_ + "/checkpoints/step-000003");

  TinyRun b(99);
  auto state = LoadCheckpoint(dir, b.Parts(), c10::kCPU);
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->step, 3);
  EXPECT_EQ(state->epoch, 2);
  EXPECT_EQ(state->position, 5u);
  EXPECT_EQ(state->algorithm, nlohmann::json({{"kl_coef", 0.25}}));
  EXPECT_TRUE(torch::equal(a.model->weight, b.model->weight));
  EXPECT_TRUE(torch::equal(a.extra[0], b.extra[0]));
  EXPECT_EQ(b.Draw(), a.Draw()) << "the generator continues where the saved one was";
  // The optimiser's moments came back: the next step is the same on both.
  a.Step();
  b.Step();
  EXPECT_TRUE(torch::equal(a.model->weight, b.model->weight));
}

TEST_F(CheckpointTest, SavingLeavesTheGlobalGeneratorAlone) {
  TinyRun a(7);
  torch::manual_seed(123);
  const double expected = torch::rand({1}).item<double>();
  torch::manual_seed(123);
  Save(a, 1);
  EXPECT_EQ(torch::rand({1}).item<double>(), expected);
}

TEST_F(CheckpointTest, LatestIsTheHighestCompleteStep) {
  EXPECT_EQ(LatestCheckpoint(out_), "") << "no checkpoints folder";
  TinyRun a(1);
  Save(a, 2);
  const std::string ten = Save(a, 10);
  fs::create_directories(out_ + "/checkpoints/step-000020");  // no trainer_state.json: an incomplete folder
  fs::create_directories(out_ + "/checkpoints/step-000030.partial-1");
  std::ofstream(out_ + "/checkpoints/step-000030.partial-1/trainer_state.json") << "{}";
  EXPECT_EQ(LatestCheckpoint(out_), ten);
}

TEST_F(CheckpointTest, SavingAgainReplacesTheFolder) {
  TinyRun a(1);
  Save(a, 4);
  a.Step();
  const std::string dir = Save(a, 4);
  TinyRun b(2);
  ASSERT_TRUE(LoadInto(dir, b).ok());
  EXPECT_TRUE(torch::equal(a.model->weight, b.model->weight));
}

TEST_F(CheckpointTest, AFailedModelSaveLeavesNoFolder) {
  TinyRun a(1);
  CheckpointParts parts = a.Parts();
  parts.save_model = [](const std::string&) { return absl::UnavailableError("disk gone"); };
  const std::string dir = CheckpointDir(out_, 1);
  EXPECT_EQ(SaveCheckpoint(dir, parts, TrainerState{}).code(), absl::StatusCode::kUnavailable);
  EXPECT_FALSE(fs::exists(dir));
  EXPECT_EQ(LatestCheckpoint(out_), "");
}

// --- A damaged trainer_state.json: DATA_LOSS naming the field, and nothing loaded ---

TEST_F(CheckpointTest, AStateOfTheWrongTypeIsDataLossNamingTheField) {
  TinyRun a(1);
  const std::string dir = Save(a, 1);
  for (const auto& [text, field] :
       std::vector<std::pair<std::string, std::string>>{{R"({"epoch": 0})", "\"step\""},
                                                        {R"({"step": -1})", "\"step\""},
                                                        {R"({"step": "1"})", "\"step\""},
                                                        {R"({"step": 1, "epoch": -2})", "\"epoch\""},
                                                        {R"({"step": 1, "position": 1.5})", "\"position\""},
                                                        {R"({"step": 1, "algorithm": []})", "\"algorithm\""}}) {
    WriteState(dir, text);
    TinyRun b(2);
    absl::Status s = LoadInto(dir, b);
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << text;
    EXPECT_THAT(s.message(), HasSubstr("trainer_state.json: field " + field)) << text;
    EXPECT_EQ(b.models_loaded, 0) << "nothing is loaded from a bad checkpoint: " << text;
  }
}

TEST_F(CheckpointTest, AStateThatIsNotAJsonObjectIsDataLoss) {
  TinyRun a(1);
  const std::string dir = Save(a, 1);
  for (const char* text : {"{\"step\": 1", "[1]", ""}) {
    WriteState(dir, text);
    absl::Status s = ReadTrainerState(dir).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << text;
    EXPECT_THAT(s.message(), HasSubstr("trainer_state.json: unreadable")) << text;
  }
}

TEST_F(CheckpointTest, MissingOptionalFieldsReadAsZero) {
  TinyRun a(1);
  const std::string dir = Save(a, 1);
  WriteState(dir, R"({"step": 4})");
  auto state = ReadTrainerState(dir);
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->step, 4);
  EXPECT_EQ(state->epoch, 0);
  EXPECT_EQ(state->position, 0u);
  EXPECT_EQ(state->algorithm, nlohmann::json::object());
}

TEST_F(CheckpointTest, AnExtraFileWithTheWrongCountIsDataLoss) {
  TinyRun a(1);
  const std::string dir = Save(a, 1);
  TinyRun b(2);
  CheckpointParts parts = b.Parts();
  parts.extra.push_back(torch::zeros({1}));
  absl::Status s = LoadCheckpoint(dir, parts, c10::kCPU).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr("extra.pt: wrong count"));
}

TEST_F(CheckpointTest, AMissingOptimizerFileIsDataLossNamingTheFolder) {
  TinyRun a(1);
  const std::string dir = Save(a, 1);
  fs::remove(dir + "/optimizer.pt");
  TinyRun b(2);
  absl::Status s = LoadInto(dir, b);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr(dir));
}

}  // namespace
}  // namespace alignd::learner
