#include "cli/serve_commands.h"

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/base/flags.h"
#include "common/base/status.h"
#include "common/model/device.h"
#include "common/model/hf_model.h"
#include "reward/model_scorer.h"
#include "reward/registry.h"
#include "reward/reward_core.h"
#include "reward/reward_service.h"
#include "rollout/engine.h"
#include "rollout/service.h"

namespace alignd::cli {
namespace {

// Starts `service` on `listen`, reports the port, serves until `stop`.
int Serve(grpc::Service* service, const std::string& listen, int max_message_bytes, const std::string& what,
          std::ostream& out, std::ostream& err, const std::function<void(int)>& ready, absl::Notification* stop) {
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  builder.SetMaxReceiveMessageSize(max_message_bytes);
  builder.SetMaxSendMessageSize(max_message_bytes);
  builder.RegisterService(service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    return ReportError(absl::UnavailableError(absl::StrCat(what, ": cannot listen on ", listen)), err);
  }
  out << what << " listening on port " << port << std::endl;
  ready(port);
  stop->WaitForNotification();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(10));
  return 0;
}

}  // namespace

int ServeRollout(const Args& args, std::ostream& out, std::ostream& err, const std::function<void(int)>& ready,
                 absl::Notification* stop) {
  FlagSet flags("alignd rollout --model DIR [--listen HOST:PORT] [flags]");
  flags.String("model", "", "HF model folder to generate with");
  flags.String("listen", "127.0.0.1:7071", "address to serve alignd.v1.Rollout on (port 0: any free port)");
  flags.String("chat-template", "chatml", "template string prompts are rendered with");
  flags.String("device", "cpu", "cpu, cuda or cuda:N: where the model generates");
  flags.Int("max-batch-rows", 64, "rows (prompts x n) decoded together at most");
  flags.Int("max-request-rows", 1024, "rows one Generate call may ask for");
  flags.String("adapters", "",
               "named PEFT adapters served on the base, NAME=DIR[,NAME=DIR...]; a request picks one "
               "by name (several LoRA jobs share one copy of the base)");
  flags.Int("max-message-bytes", 64 << 20, "largest request or response (inline weight updates count)");
  if (auto stop = ParseFlags(flags, args, "", out, err)) return *stop;
  if (flags.GetString("model").empty()) {
    err << "error: --model is required\n" << flags.Usage();
    return 2;
  }
  const int64_t max_bytes = flags.GetInt("max-message-bytes");
  if (max_bytes < 1024 || max_bytes > (1 << 30)) {
    err << "error: --max-message-bytes must be in [1024, 1073741824]\n";
    return 2;
  }
  absl::StatusOr<torch::Device> device = ResolveDevice(flags.GetString("device"), "--device");
  if (!device.ok()) return ReportError(device.status(), err);
  LoadOptions load;
  load.device = *device;
  absl::StatusOr<LoadedModel> model = LoadModelDir(flags.GetString("model"), load);
  if (!model.ok()) return ReportError(model.status(), err);
  if (model->tokenizer == nullptr) {
    return ReportError(absl::InvalidArgumentError(absl::StrCat(flags.GetString("model"), ": no tokenizer")), err);
  }
  model->model->eval();
  rollout::Engine::Options options;
  options.model = model->model;
  options.tokenizer = std::shared_ptr<const Tokenizer>(std::move(model->tokenizer));
  options.chat_template = flags.GetString("chat-template");
  options.max_batch_rows = flags.GetInt("max-batch-rows");
  auto engine = rollout::Engine::Create(std::move(options));
  if (!engine.ok()) return ReportError(engine.status(), err);
  for (absl::string_view entry : absl::StrSplit(flags.GetString("adapters"), ',', absl::SkipEmpty())) {
    const size_t eq = entry.find('=');
    if (eq == absl::string_view::npos || eq == 0 || eq + 1 == entry.size()) {
      err << "error: --adapters: \"" << entry << "\" is not NAME=DIR\n";
      return 2;
    }
    absl::Status loaded = (*engine)->LoadAdapter(std::string(entry.substr(0, eq)), std::string(entry.substr(eq + 1)));
    if (!loaded.ok()) return ReportError(Annotate(loaded, "--adapters"), err);
  }
  rollout::RolloutService::Options service_options;
  service_options.model_name = flags.GetString("model");
  service_options.max_request_rows = flags.GetInt("max-request-rows");
  rollout::RolloutService service(engine->get(), service_options);
  return Serve(&service, flags.GetString("listen"), static_cast<int>(max_bytes), "rollout", out, err, ready, stop);
}

int ServeReward(const Args& args, std::ostream& out, std::ostream& err, const std::function<void(int)>& ready,
                absl::Notification* stop) {
  FlagSet flags("alignd reward --rewards FILE.yaml [--listen HOST:PORT]");
  flags.String("listen", "127.0.0.1:7072", "address to serve alignd.v1.Reward on (port 0: any free port)");
  flags.String("rewards", "",
               "YAML file with a `rewards` list, the parts to serve (a PPO/GRPO job spec will do; README, Rewards)");
  flags.String("chat-template", "chatml",
               "template reward models read prompt + response with, unless a part names one");
  flags.String("device", "cpu", "cpu, cuda or cuda:N: where reward models run");
  flags.Int("max-queued-requests", 16, "requests waiting at most; more are answered RESOURCE_EXHAUSTED");
  flags.Int("max-request-items", 1024, "items in one request at most (INVALID_ARGUMENT above)");
  flags.Int("max-batch-items", 64, "items scored together at most when grouping requests");
  if (auto stop = ParseFlags(flags, args, "", out, err)) return *stop;
  auto scorers = [&]() -> absl::StatusOr<std::vector<reward::WeightedScorer>> {
    if (flags.GetString("rewards").empty()) return absl::InvalidArgumentError("--rewards is required");
    ASSIGN_OR_RETURN(torch::Device device, ResolveDevice(flags.GetString("device"), "--device"));
    absl::StatusOr<std::vector<reward::RewardPartSpec>> parts = reward::ReadRewardParts(flags.GetString("rewards"));
    if (!parts.ok()) return Annotate(parts.status(), "--rewards");
    return reward::MakeScorers(*parts, reward::ModelScorerContext(flags.GetString("chat-template"), device));
  }();
  if (!scorers.ok()) {
    ReportError(scorers.status(), err);
    return scorers.status().code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  reward::RewardCore::Options options;
  options.scorers = std::move(scorers).value();
  options.max_queued_requests = flags.GetInt("max-queued-requests");
  options.max_request_items = flags.GetInt("max-request-items");
  options.max_batch_items = flags.GetInt("max-batch-items");
  auto core = reward::RewardCore::Create(std::move(options));
  if (!core.ok()) {
    ReportError(core.status(), err);
    return 2;
  }
  reward::RewardService service(core->get());
  return Serve(&service, flags.GetString("listen"), 16 << 20, "reward", out, err, ready, stop);
}

int RunRolloutServer(const Args& args, std::ostream& out, std::ostream& err) {
  return ServeUntilSignal([&](absl::Notification* stop) {
    return ServeRollout(
        args, out, err, [](int) {}, stop);
  });
}

int RunRewardServer(const Args& args, std::ostream& out, std::ostream& err) {
  return ServeUntilSignal([&](absl::Notification* stop) {
    return ServeReward(
        args, out, err, [](int) {}, stop);
  });
}

}  // namespace alignd::cli
