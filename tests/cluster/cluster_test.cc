// Distributed jobs with real processes on loopback: `alignd coordinator`, two `alignd worker` learners, one rollout
// worker and one reward server run a PPO job to the end; then the same job survives a learner killed with SIGKILL
// mid-run (and restarted, as a supervisor would), and a rollout worker killed the same way. After a restart from the
// checkpoint the losses equal the uninterrupted run's.
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/base/file_util.h"
#include "common/data/synth.h"
#include "common/rpc/job_credential.h"
#include "coordinator/job_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/alignd.grpc.pb.h"

extern char** environ;

namespace alignd {
namespace {

using json = nlohmann::json;
const std::string kAlignd = std::string(ALIGND_BINARY_DIR) + "/cli/alignd";
const std::string kAlignctl = std::string(ALIGND_BINARY_DIR) + "/cli/alignctl";
// The tokens of a secured cluster (SecuredClusterTest).
const std::string kAdminToken = "admin-token-0123456789";
const std::string kWorkerToken = "worker-token-0123456789";

// A child process whose output goes to a log file.
class Process {
 public:
  Process(std::vector<std::string> args, std::string log, std::string binary = kAlignd)
      : binary_(std::move(binary)), args_(std::move(args)), log_(std::move(log)) {}
  ~Process() { Kill(SIGKILL); }

  void Start() {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, log_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(binary_.c_str()));
    for (auto& a : args_) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ASSERT_EQ(posix_spawn(&pid_, binary_.c_str(), &actions, nullptr, argv.data(), environ), 0);
    posix_spawn_file_actions_destroy(&actions);
  }
  // Waits for the process to exit and returns its exit status (-1 when it did not exit normally).
  int Wait() {
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  void Kill(int signal) {
    if (pid_ <= 0) return;
    kill(pid_, signal);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
  }
  std::string Log() const { return ReadFile(log_).value_or(""); }
  // Waits (bounded) for `pattern` in the log; returns the first capture group.
  std::string WaitFor(const std::string& pattern, absl::Duration timeout = absl::Seconds(60)) const {
    const absl::Time end = absl::Now() + timeout;
    std::regex re(pattern);
    while (absl::Now() < end) {
      std::smatch m;
      std::string log = Log();
      if (std::regex_search(log, m, re)) return m.size() > 1 ? m[1].str() : m[0].str();
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return "";
  }

 private:
  std::string binary_;
  std::vector<std::string> args_;
  std::string log_;
  pid_t pid_ = -1;
};

class ClusterTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(::testing::TempDir() + "/cluster");
    SynthOptions o;
    o.pretrain = 10;
    o.sft_train = 10;
    o.sft_eval = 10;
    o.pref_train = 10;
    o.pref_eval = 10;
    o.prompts_train = 64;
    o.prompts_eval = 8;
    setup_ = new absl::Status(WriteSynthData(*dir_ + "/data", o));
  }

  void SetUp() override {
    ASSERT_TRUE(setup_->ok()) << *setup_;
    const std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    root_ = *dir_ + "/" + name;
    ASSERT_TRUE(MakeDirs(root_).ok());
    // The policy the rollout workers load: a tiny model alignd initialises itself.
    Process init({"init", "--out", root_ + "/policy", "--hidden_size", "32", "--layers", "2", "--heads", "4",
                  "--kv_heads", "2", "--max_positions", "256", "--seed", "5", "--threads", "1"},
                 root_ + "/init.log");
    init.Start();
    ASSERT_EQ(init.Wait(), 0) << init.Log();
    ASSERT_TRUE(PathExists(root_ + "/policy/config.json")) << init.Log();

    if (Tls()) ASSERT_NO_FATAL_FAILURE(MakeCertificates());
    if (Secured()) {
      ASSERT_TRUE(WriteFileAtomic(root_ + "/tokens",
                                  absl::StrCat(kAdminToken, " admin admin\n", kWorkerToken, " workers worker\n"))
                      .ok());
    }
    StartCoordinator("0");
    ASSERT_FALSE(port_.empty()) << coordinator_->Log();
    address_ = "127.0.0.1:" + port_;
    coordinator::JobClient::Options co;
    co.address = address_;
    if (Secured()) co.token = kAdminToken;
    if (Tls()) {
      co.tls_ca_file = root_ + "/tls/ca.pem";
      co.tls_cert_file = root_ + "/tls/client.pem";
      co.tls_key_file = root_ + "/tls/client.key";
    }
    co.timeout = absl::Seconds(10);
    auto client = coordinator::JobClient::Connect(co);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = std::move(*client);
    for (const char* role : {"learner", "learner", "rollout", "reward"}) StartWorker(role);
    WaitForWorkers(4);
  }

  // With tokens: the coordinator reads a tokens file, workers show the worker token, the client the admin's.
  virtual bool Secured() const { return false; }
  // With TLS everywhere: the coordinator serves mutual TLS, and each worker's own server serves TLS and requires the
  // certificates of peers (and their job's credential).
  virtual bool Tls() const { return false; }

  // A CA, a certificate for the coordinator and each worker (all on 127.0.0.1; server and client use), and one for
  // the test's client; with openssl, in root_/tls.
  void MakeCertificates() {
    const std::string script = absl::StrCat(
        "set -e; mkdir -p ", root_, "/tls; cd ", root_, "/tls;",
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=ca >/dev/null 2>&1;",
        "leaf() { openssl req -newkey rsa:2048 -nodes -keyout $1.key -out $1.csr -subj /CN=$1 >/dev/null 2>&1;",
        "  printf \"$2\" > $1.ext;",
        "  openssl x509 -req -in $1.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out $1.pem -days 2 "
        "-extfile $1.ext >/dev/null 2>&1; };",
        "leaf node 'subjectAltName=IP:127.0.0.1\\nextendedKeyUsage=serverAuth,clientAuth\\n';",
        "leaf client 'extendedKeyUsage=clientAuth\\n';");
    ASSERT_EQ(system(script.c_str()), 0) << "openssl could not make the test's certificates";
  }

  // Starts `alignd coordinator` on `port` ("0": any free one) with the test's database, logging to its own file;
  // sets port_ to the port it listens on.
  void StartCoordinator(const std::string& port) {
    std::vector<std::string> args{"coordinator", "--listen=127.0.0.1:" + port, "--db=" + root_ + "/jobs.db",
                                  "--lease-ttl-ms=3000"};
    if (Secured()) args.push_back("--auth-tokens=" + root_ + "/tokens");
    if (Tls()) {
      for (std::string a : {"--tls-cert=node.pem", "--tls-key=node.key", "--tls-client-ca=ca.pem"}) {
        args.push_back(a.replace(a.find('=') + 1, 0, root_ + "/tls/"));
      }
    }
    coordinator_ = std::make_unique<Process>(args, absl::StrCat(root_, "/coordinator-", ++coordinators_, ".log"));
    coordinator_->Start();
    port_ = coordinator_->WaitFor("listening on port ([0-9]+)");
  }

  void StartWorker(const std::string& role) {
    const int n = static_cast<int>(workers_.size());
    std::vector<std::string> args{"worker", "--coordinator=" + address_, "--roles=" + role, "--threads=1"};
    if (Secured()) args.push_back("--token=" + kWorkerToken);
    if (Tls()) {
      for (std::string a : {"--tls-ca=ca.pem", "--tls-cert=node.pem", "--tls-key=node.key"}) {
        args.push_back(a.replace(a.find('=') + 1, 0, root_ + "/tls/"));
      }
    }
    workers_.push_back(std::make_unique<Process>(args, absl::StrCat(root_, "/worker-", n, "-", role, ".log")));
    roles_.push_back(role);
    workers_.back()->Start();
  }

  void WaitForWorkers(int count) {
    const absl::Time end = absl::Now() + absl::Seconds(60);
    while (absl::Now() < end) {
      auto list = client_->ListWorkers();
      if (list.ok() && list->workers_size() >= count) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    FAIL() << "workers did not register";
  }

  std::string Spec(const std::string& name, const std::string& extra = "", int steps = 8) const {
    return absl::StrCat(extra, R"(name: )", name, R"(
algorithm: ppo
output_dir: )",
                        root_, "/runs/", name, R"(
seed: 7
threads: 1
model:
  path: )",
                        root_, R"(/policy
data:
  train: )",
                        *dir_, R"(/data/prompts_train.jsonl
  chat_template: chatml
  max_length: 96
  max_prompt_length: 64
train:
  steps: )",
                        steps, R"(
  batch_size: 8
  lr: 1.0e-3
  warmup_steps: 0
  schedule: constant
  checkpoint_every: 2
  log_every: 1
rewards:
  - {type: toy.arithmetic}
  - {type: toy.refusal}
  - {type: toy.brevity}
ppo:
  max_new_tokens: 8
  epochs: 1
  minibatches: 2
resources:
  learners: 2
  rollout_workers: 1
  reward_servers: 1
  max_restarts: 3
)");
  }

  // `spec` with each edit's first string replaced by its second (a failure when the first is not there).
  static std::string Edited(std::string spec, const std::vector<std::pair<std::string, std::string>>& edits) {
    for (const auto& [from, to] : edits) {
      const size_t at = spec.find(from);
      EXPECT_NE(at, std::string::npos) << from;
      if (at != std::string::npos) spec.replace(at, from.size(), to);
    }
    return spec;
  }

  // Polls until the job is finished; returns it.
  v1::Job WaitDone(const std::string& id, absl::Duration timeout = absl::Seconds(240)) {
    const absl::Time end = absl::Now() + timeout;
    v1::Job job;
    while (absl::Now() < end) {
      auto got = client_->Get(id);
      if (got.ok()) {
        job = *got;
        if (job.state() == v1::JOB_STATE_SUCCEEDED || job.state() == v1::JOB_STATE_FAILED ||
            job.state() == v1::JOB_STATE_CANCELLED) {
          return job;
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ADD_FAILURE() << "job " << id << " did not finish: " << job.DebugString();
    return job;
  }

  // Waits until the job is RUNNING at `step` or later (a checkpoint of step 2 is then written and reported).
  bool WaitStep(const std::string& id, uint64_t step) {
    const absl::Time end = absl::Now() + absl::Seconds(120);
    while (absl::Now() < end) {
      auto got = client_->Get(id);
      if (got.ok() && got->state() == v1::JOB_STATE_RUNNING && got->step() >= step) return true;
      if (got.ok() && got->state() == v1::JOB_STATE_SUCCEEDED) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }

  // The lines of a job's metrics.jsonl that parse.
  std::vector<json> MetricLines(const std::string& name) const {
    std::vector<json> out;
    std::ifstream in(root_ + "/runs/" + name + "/metrics.jsonl");
    for (std::string line; std::getline(in, line);) {
      json j = json::parse(line, nullptr, false);
      if (!j.is_discarded()) out.push_back(std::move(j));
    }
    return out;
  }

  // train/loss by step from a job's metrics.jsonl.
  std::map<int64_t, double> Losses(const std::string& name) const {
    std::map<int64_t, double> out;
    for (const json& j : MetricLines(name)) {
      if (j.contains("train/loss")) out[j["step"].get<int64_t>()] = j["train/loss"].get<double>();
    }
    return out;
  }

  // The largest value of `metric` over a job's metrics.jsonl (-1 when absent).
  double MaxMetric(const std::string& name, const std::string& metric) const {
    double best = -1;
    for (const json& j : MetricLines(name)) {
      if (j.contains(metric)) best = std::max(best, j[metric].get<double>());
    }
    return best;
  }

  // A restarted job's losses, step by step, equal the uninterrupted run's (`plain`).
  void ExpectSameLosses(const std::string& name, const std::map<int64_t, double>& plain) const {
    std::map<int64_t, double> losses = Losses(name);
    ASSERT_EQ(losses.size(), plain.size()) << name;
    for (const auto& [step, loss] : plain) {
      EXPECT_NEAR(losses[step], loss, 1e-5 * std::max(1.0, std::abs(loss))) << name << " step " << step;
    }
  }

  // Submits `spec` as `name`, kills a `role` worker once step 3 is running, and checks that the job restarts (from
  // its step-2 checkpoint) and completes with the uninterrupted run's losses (`plain`).
  void ExpectKilledWorkerCostsNothing(const std::string& spec, const std::string& name, const std::string& role,
                                      const std::map<int64_t, double>& plain) {
    auto job = client_->Submit(spec, name);
    ASSERT_TRUE(job.ok()) << job.status();
    ASSERT_TRUE(WaitStep(job->id(), 3)) << Logs();
    KillAndReplace(role);
    v1::Job done = WaitDone(job->id());
    ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.DebugString() << Logs();
    EXPECT_GE(done.attempt(), 2u);
    ExpectSameLosses(name, plain);
  }

  // Kills the first worker process of `role` with SIGKILL and starts a replacement.
  void KillAndReplace(const std::string& role) {
    for (size_t i = 0; i < workers_.size(); ++i) {
      if (roles_[i] != role) continue;
      workers_[i]->Kill(SIGKILL);
      roles_[i] = "dead";
      StartWorker(role);
      return;
    }
  }

  std::string Logs() const {
    std::string all = "coordinator:\n" + coordinator_->Log();
    for (size_t i = 0; i < workers_.size(); ++i) all += "\nworker " + roles_[i] + ":\n" + workers_[i]->Log();
    return all;
  }

  void TearDown() override {
    workers_.clear();
    if (coordinator_) coordinator_->Kill(SIGTERM);
  }

  static std::string* dir_;
  static absl::Status* setup_;
  std::string root_, address_, port_;
  int coordinators_ = 0;
  std::unique_ptr<Process> coordinator_;
  std::vector<std::unique_ptr<Process>> workers_;
  std::vector<std::string> roles_;
  std::unique_ptr<coordinator::JobClient> client_;
};

std::string* ClusterTest::dir_ = nullptr;
absl::Status* ClusterTest::setup_ = nullptr;

// Runs the uninterrupted job and returns its losses.
TEST_F(ClusterTest, PpoJobCompletesAndSurvivesKilledWorkers) {
  auto a = client_->Submit(Spec("plain"), "plain");
  ASSERT_TRUE(a.ok()) << a.status();
  v1::Job done = WaitDone(a->id());
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.DebugString() << Logs();
  EXPECT_EQ(done.attempt(), 1u);
  EXPECT_TRUE(PathExists(root_ + "/runs/plain/final/config.json"));
  std::map<int64_t, double> plain = Losses("plain");
  ASSERT_EQ(plain.size(), 8u);
  {
    // Every step generated on the rollout worker with the weights the learner had just published.
    std::ifstream in(root_ + "/runs/plain/metrics.jsonl");
    int synced = 0;
    for (std::string line; std::getline(in, line);) {
      json j = json::parse(line);
      if (!j.contains("weights/version")) continue;
      EXPECT_EQ(j["weights/version"].get<double>(), j["step"].get<double>());
      EXPECT_EQ(j["rollout/staleness"].get<double>(), 0.0);
      EXPECT_GT(j["weights/sync_bytes"].get<double>(), 1e4);
      ++synced;
    }
    EXPECT_EQ(synced, 8);
    // The learner and the rollout worker (another process, KV-cache decoding) agree on the sampled tokens' log-probs.
    const double plain_gap = MaxMetric("plain", "rollout/logprob_gap");
    EXPECT_GE(plain_gap, 0.0);  // present
    EXPECT_LT(plain_gap, 1e-4);
  }

  // alignctl logs: the job's history, progress as a bar with key metrics, and the reported checkpoints.
  Process logs({"logs", a->id(), "--coordinator=" + address_}, root_ + "/logs.txt", kAlignctl);
  logs.Start();
  ASSERT_EQ(logs.Wait(), 0) << logs.Log();
  EXPECT_THAT(logs.Log(), ::testing::HasSubstr("step 8/8 [####################] 100%  objective/kl="));
  EXPECT_THAT(logs.Log(), ::testing::HasSubstr("(checkpoint step 8 in "));
  EXPECT_THAT(logs.Log(), ::testing::HasSubstr("SUCCEEDED"));

  // A learner killed after the step-2 checkpoint: the gang restarts from it and the job completes.
  ExpectKilledWorkerCostsNothing(Spec("learner_killed"), "learner_killed", "learner", plain);

  // With LoRA only the adapter's tensors travel to the rollout worker, which holds the same adapters.
  auto lora = client_->Submit(Spec("lora", "lora:\n  r: 4\n  alpha: 8\n  target_modules: [q_proj, v_proj]\n"), "lora");
  ASSERT_TRUE(lora.ok()) << lora.status();
  done = WaitDone(lora->id());
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.DebugString() << Logs();
  {
    std::map<std::string, double> plain_bytes, lora_bytes;
    for (const auto& [name, out] : {std::make_pair("plain", &plain_bytes), std::make_pair("lora", &lora_bytes)}) {
      std::ifstream in(root_ + "/runs/" + name + "/metrics.jsonl");
      for (std::string line; std::getline(in, line);) {
        json j = json::parse(line);
        if (j.contains("weights/sync_bytes")) (*out)[std::to_string(j["step"].get<int>())] = j["weights/sync_bytes"];
      }
    }
    ASSERT_EQ(lora_bytes.size(), 8u);
    // 2 layers x (q_proj + v_proj) x (A + B) at rank 4, float32: a few KB against the whole model's ~100+ KB.
    EXPECT_LT(lora_bytes["1"] * 10, plain_bytes["1"]) << lora_bytes["1"] << " vs " << plain_bytes["1"];
    EXPECT_TRUE(PathExists(root_ + "/runs/lora/adapter/adapter_model.safetensors"));
    // The rollout worker generated with the adapter the learner had trained: the learner's log-probs of the
    // sampled tokens equal the rollout worker's (a stale adapter would show as a gap from step 2 on).
    const double lora_gap = MaxMetric("lora", "rollout/logprob_gap");
    EXPECT_GE(lora_gap, 0.0);  // present
    EXPECT_LT(lora_gap, 1e-4);
  }

  // The same for the rollout worker.
  ExpectKilledWorkerCostsNothing(Spec("rollout_killed"), "rollout_killed", "rollout", plain);

  // The coordinator killed mid-run and started again on the same database and port: the workers see their streams
  // close, register again, and the job restarts from its checkpoint and completes with the same losses.
  auto d = client_->Submit(Spec("coordinator_killed"), "coordinator_killed");
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_TRUE(WaitStep(d->id(), 3)) << Logs();
  const std::string port = port_;
  coordinator_->Kill(SIGKILL);
  StartCoordinator(port);
  ASSERT_EQ(port_, port) << coordinator_->Log();
  done = WaitDone(d->id());
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.DebugString() << Logs();
  EXPECT_GE(done.attempt(), 2u);
  ExpectSameLosses("coordinator_killed", plain);
}

// Online DPO on two learners, a rollout worker and a reward server: the learners pick the same pairs from the shared
// scores and split them; a learner killed after the step-2 checkpoint costs nothing (the same losses).
TEST_F(ClusterTest, OnlineDpoOnTwoLearnersSurvivesAKilledLearner) {
  const auto spec = [&](const std::string& name) {
    return Edited(Spec(name), {{"algorithm: ppo", "algorithm: online_dpo"},
                               {"ppo:\n  max_new_tokens: 8",
                                "dpo:\n  beta: 0.1\nppo:\n  samples_per_prompt: 2\n  max_new_tokens: 8"}});
  };
  auto a = client_->Submit(spec("online"), "online");
  ASSERT_TRUE(a.ok()) << a.status();
  v1::Job done = WaitDone(a->id());
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.DebugString() << Logs();
  std::map<int64_t, double> plain = Losses("online");
  ASSERT_EQ(plain.size(), 8u);
  // toy.brevity tells nearly every prompt's two answers apart, so each step trains on pairs.
  double updates = 0, fraction = 0;
  for (const json& j : MetricLines("online")) {
    if (!j.contains("train/loss")) continue;  // not a step's line
    ASSERT_TRUE(j.contains("pairs/fraction") && j.contains("train/updates")) << j.dump();
    updates += j["train/updates"].get<double>();
    fraction += j["pairs/fraction"].get<double>() / 8;
  }
  EXPECT_GE(updates, 8.0);
  EXPECT_GT(fraction, 0.5);
  EXPECT_LT(MaxMetric("online", "rollout/logprob_gap"), 1e-4);

  ExpectKilledWorkerCostsNothing(spec("online_killed"), "online_killed", "learner", plain);
}

// A job on one learner, its rollout worker and its reward server gives what `alignd train` gives in one process:
// every step's losses and rewards, and its evaluations, which run on the rollout worker with the weights of the step
// just trained. The tiny random policy writes bytes that are no UTF-8, which reach the reward as U+FFFD either way.
TEST_F(ClusterTest, OneLearnerJobMatchesTheSameJobInProcess) {
  const auto spec = [&](const std::string& name) {
    return Edited(Spec(name, "", 6), {{"  learners: 2", "  learners: 1"},
                                      {"  log_every: 1", "  log_every: 1\n  eval_every: 3"},
                                      {"  chat_template: chatml",
                                       "  eval: " + *dir_ + "/data/prompts_eval.jsonl\n  chat_template: chatml"}});
  };
  auto job = client_->Submit(spec("cluster"), "cluster");
  ASSERT_TRUE(job.ok()) << job.status();
  v1::Job done = WaitDone(job->id());
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.DebugString() << Logs();
  ASSERT_TRUE(WriteFileAtomic(root_ + "/inproc.yaml", spec("inproc")).ok());
  Process train({"train", "--spec", root_ + "/inproc.yaml", "--threads", "1"}, root_ + "/inproc.log");
  train.Start();
  ASSERT_EQ(train.Wait(), 0) << train.Log();

  // Each run's metrics by step (training and evaluation lines apart).
  const auto lines = [&](const std::string& name) {
    std::map<std::pair<int64_t, bool>, json> out;
    for (const json& j : MetricLines(name)) out[{j["step"].get<int64_t>(), j.contains("eval/reward/mean")}] = j;
    return out;
  };
  const auto cluster = lines("cluster"), inproc = lines("inproc");
  ASSERT_EQ(cluster.size(), 8u);  // 6 steps and 2 evaluations
  ASSERT_EQ(inproc.size(), cluster.size());
  // The same kernels see the same shapes in both: the numbers are equal, not close.
  for (const auto& [key, c] : cluster) {
    const json& i = inproc.at(key);
    const std::string at = absl::StrCat(key.second ? "the evaluation at step " : "step ", key.first);
    const std::vector<std::string> names =
        key.second ? std::vector<std::string>{"eval/reward/mean", "eval/rollout/length", "eval/objective/kl"}
                   : std::vector<std::string>{"train/loss", "reward/mean", "rollout/length", "objective/kl",
                                              "train/grad_norm"};
    for (const std::string& name : names) {
      ASSERT_TRUE(c.contains(name) && i.contains(name)) << name << ", " << at;
      EXPECT_EQ(c[name].get<double>(), i[name].get<double>()) << name << ", " << at;
    }
    // The rollout worker generated with the learner's live weights, the evaluations too.
    EXPECT_LT(c[key.second ? "eval/rollout/logprob_gap" : "rollout/logprob_gap"].get<double>(), 1e-4) << at;
  }
}

// A cluster with tokens. The workers' own servers (Rollout, Reward, Rendezvous) admit only the job's own members,
// however the caller got to their ports.
class SecuredClusterTest : public ClusterTest {
 protected:
  bool Secured() const override { return true; }
};

// Calls `method` of a stub of `Service` at `address` with `credential` ("" sends none) over `creds` (null:
// plaintext); returns the status and how long the answer took.
template <typename Service, typename Request, typename Response>
std::pair<grpc::StatusCode, absl::Duration> CallWorker(const std::string& address, const std::string& credential,
                                                       grpc::Status (Service::Stub::*method)(grpc::ClientContext*,
                                                                                             const Request&, Response*),
                                                       const Request& request,
                                                       std::shared_ptr<grpc::ChannelCredentials> creds = nullptr) {
  // One channel per worker and credentials, so that timings exclude connecting.
  static std::map<std::pair<std::string, void*>, std::shared_ptr<grpc::Channel>> channels;
  auto& channel = channels[{address, creds.get()}];
  if (!channel) channel = grpc::CreateChannel(address, creds ? creds : grpc::InsecureChannelCredentials());
  auto stub = Service::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  if (!credential.empty()) context.AddMetadata("authorization", "Bearer " + credential);
  Response response;
  const absl::Time start = absl::Now();
  grpc::Status status = ((*stub).*method)(&context, request, &response);
  return {status.error_code(), absl::Now() - start};
}

TEST_F(SecuredClusterTest, WorkerServersAdmitOnlyTheirJobsMembers) {
  // Long enough that the job is still running while every check below is made, on a loaded machine too: with 8 steps
  // this test failed once in a loaded run (not reproduced in 4 more), and a job that ends first makes the workers
  // answer "idle" instead.
  auto submitted = client_->Submit(Spec("guarded", "", 30), "guarded");
  ASSERT_TRUE(submitted.ok()) << submitted.status();
  const std::string id = submitted->id();
  ASSERT_TRUE(WaitStep(id, 2)) << Logs();
  auto job = client_->Get(id);
  ASSERT_TRUE(job.ok()) << job.status();
  const uint32_t attempt = job->attempt();

  // The gang's servers, from the coordinator's list.
  std::string rollout, reward;
  std::vector<std::string> learners;
  auto listed = client_->ListWorkers();
  ASSERT_TRUE(listed.ok()) << listed.status();
  for (const v1::WorkerStatus& w : listed->workers()) {
    if (w.job_id() != id) continue;
    if (w.assigned_role() == v1::ROLE_ROLLOUT) rollout = w.worker().address();
    if (w.assigned_role() == v1::ROLE_REWARD) reward = w.worker().address();
    if (w.assigned_role() == v1::ROLE_LEARNER) learners.push_back(w.worker().address());
  }
  ASSERT_FALSE(rollout.empty());
  ASSERT_FALSE(reward.empty());
  ASSERT_EQ(learners.size(), 2u);

  // Whoever holds the worker token can mint credentials: registering as a worker hands out the key. (As a CUDA
  // worker, which this CPU job's scheduler never places anything on.)
  std::string key;
  {
    auto stub = v1::WorkerService::NewStub(grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    context.AddMetadata("authorization", "Bearer " + kWorkerToken);
    v1::RegisterWorkerRequest request;
    request.mutable_worker()->add_roles(v1::ROLE_REWARD);
    request.mutable_worker()->set_device(v1::DEVICE_KIND_CUDA);
    request.mutable_worker()->set_address("127.0.0.1:1");
    v1::RegisterWorkerResponse response;
    ASSERT_TRUE(stub->Register(&context, request, &response).ok());
    key = response.credential_key();
    ASSERT_EQ(key.size(), 32u);
  }
  const std::string own = MintJobCredential(key, id, attempt);
  const std::string other_job = MintJobCredential(key, "j-999999", 1);
  const std::string earlier_attempt = MintJobCredential(key, id, attempt - 1);
  const std::string later_attempt = MintJobCredential(key, id, attempt + 1);
  const std::string forged = own.substr(0, own.size() - 4) + "0000";

  v1::GetInfoRequest info;
  v1::GenerateRequest generate;
  generate.add_prompts("What is 2 + 2?");
  generate.mutable_sampling()->set_max_new_tokens(4);
  v1::UpdateWeightsRequest update;  // an empty manifest
  v1::ScoreRequest score;
  v1::ScoreItem* item = score.add_items();
  item->set_prompt("What is 2 + 2?");
  item->set_response("4");
  v1::StoreRequest store;
  store.set_group("learners");
  store.set_op(v1::STORE_OP_CHECK);
  store.add_keys("x");
  using Code = grpc::StatusCode;
  auto expect_each = [&](const std::string& credential, Code code, const std::string& what) {
    EXPECT_EQ(CallWorker<v1::Rollout>(rollout, credential, &v1::Rollout::Stub::GetInfo, info).first, code) << what;
    EXPECT_EQ(CallWorker<v1::Rollout>(rollout, credential, &v1::Rollout::Stub::Generate, generate).first, code) << what;
    EXPECT_EQ(CallWorker<v1::Rollout>(rollout, credential, &v1::Rollout::Stub::UpdateWeights, update).first, code)
        << what;
    EXPECT_EQ(CallWorker<v1::Reward>(reward, credential, &v1::Reward::Stub::Score, score).first, code) << what;
    for (const std::string& learner : learners) {
      EXPECT_EQ(CallWorker<v1::Rendezvous>(learner, credential, &v1::Rendezvous::Stub::Store, store).first, code)
          << what;
    }
  };
  expect_each("", Code::UNAUTHENTICATED, "no credential");
  expect_each(forged, Code::UNAUTHENTICATED, "a forged credential");
  expect_each(kAdminToken, Code::UNAUTHENTICATED, "a user's token");
  expect_each(other_job, Code::PERMISSION_DENIED, "another job's credential");
  expect_each(earlier_attempt, Code::PERMISSION_DENIED, "an earlier attempt's credential");
  // A later attempt's members may call before this worker has its assignment: "not yet", which they retry.
  expect_each(later_attempt, Code::UNAVAILABLE, "a later attempt's credential");

  // The job's own credential, and the worker token, get served.
  EXPECT_EQ(CallWorker<v1::Rollout>(rollout, own, &v1::Rollout::Stub::GetInfo, info).first, Code::OK);
  EXPECT_EQ(CallWorker<v1::Rollout>(rollout, kWorkerToken, &v1::Rollout::Stub::GetInfo, info).first, Code::OK);
  EXPECT_EQ(CallWorker<v1::Rollout>(rollout, own, &v1::Rollout::Stub::Generate, generate).first, Code::OK);
  EXPECT_EQ(CallWorker<v1::Reward>(reward, own, &v1::Reward::Stub::Score, score).first, Code::OK);

  // Bad input from a member is refused at once, and takes nothing from the job: an announcement that cannot be
  // applied must not consume the broadcast the learner's next version arrives on.
  auto bad_update = [&](v1::UpdateWeightsRequest r, Code code, const std::string& what) {
    auto [got, took] = CallWorker<v1::Rollout>(rollout, own, &v1::Rollout::Stub::UpdateWeights, r);
    EXPECT_EQ(got, code) << what;
    EXPECT_LT(took, absl::Seconds(1)) << what;
  };
  bad_update(update, Code::INVALID_ARGUMENT, "an empty manifest");
  v1::UpdateWeightsRequest stale;
  v1::TensorEntry* t = stale.mutable_manifest()->add_tensors();
  t->set_name("lm_head.weight");
  t->set_dtype("F32");
  t->add_shape(1);
  t->set_nbytes(4);
  stale.mutable_manifest()->add_bucket_bytes(4);
  stale.mutable_manifest()->set_checksum_algorithm("xxh3-128");
  stale.mutable_manifest()->set_checksum(std::string(32, '0'));
  stale.mutable_manifest()->set_version(1);
  bad_update(stale, Code::FAILED_PRECONDITION, "a version not above the worker's");
  v1::UpdateWeightsRequest md5 = stale;
  md5.mutable_manifest()->set_version(1000000);
  md5.mutable_manifest()->set_checksum_algorithm("md5");
  bad_update(md5, Code::INVALID_ARGUMENT, "an unknown checksum algorithm");
  v1::UpdateWeightsRequest huge = stale;
  huge.mutable_manifest()->set_version(1000000);
  huge.mutable_manifest()->set_bucket_bytes(0, uint64_t{1} << 40);
  bad_update(huge, Code::RESOURCE_EXHAUSTED, "an oversized update");
  v1::GenerateRequest empty;
  EXPECT_EQ(CallWorker<v1::Rollout>(rollout, own, &v1::Rollout::Stub::Generate, empty).first, Code::INVALID_ARGUMENT);
  v1::GenerateRequest both = generate;
  both.add_prompt_token_ids()->add_ids(1);
  EXPECT_EQ(CallWorker<v1::Rollout>(rollout, own, &v1::Rollout::Stub::Generate, both).first, Code::INVALID_ARGUMENT);
  v1::GenerateRequest out_of_vocab;
  out_of_vocab.add_prompt_token_ids()->add_ids(1 << 30);
  EXPECT_EQ(CallWorker<v1::Rollout>(rollout, own, &v1::Rollout::Stub::Generate, out_of_vocab).first,
            Code::INVALID_ARGUMENT);
  EXPECT_EQ(CallWorker<v1::Reward>(reward, own, &v1::Reward::Stub::Score, v1::ScoreRequest()).first,
            Code::INVALID_ARGUMENT);

  // The job completes on its first attempt: none of the above disturbed it.
  v1::Job done = WaitDone(id);
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.DebugString() << Logs();
  EXPECT_EQ(done.attempt(), attempt);

  // Idle workers answer UNAVAILABLE at once (they once held Generate, Score and UpdateWeights until the deadline).
  auto expect_idle = [&](Code code, absl::Duration took, const std::string& what) {
    EXPECT_EQ(code, Code::UNAVAILABLE) << what;
    EXPECT_LT(took, absl::Milliseconds(100)) << what;
  };
  // The workers learn that the job ended a moment after the coordinator does (its cancel message); until then they
  // still serve it.
  for (absl::Time end = absl::Now() + absl::Seconds(20); absl::Now() < end;) {
    if (CallWorker<v1::Rollout>(rollout, own, &v1::Rollout::Stub::Generate, generate).first == Code::UNAVAILABLE &&
        CallWorker<v1::Reward>(reward, own, &v1::Reward::Stub::Score, score).first == Code::UNAVAILABLE) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  auto [g, gt] = CallWorker<v1::Rollout>(rollout, own, &v1::Rollout::Stub::Generate, generate);
  auto [u, ut] = CallWorker<v1::Rollout>(rollout, own, &v1::Rollout::Stub::UpdateWeights, stale);
  auto [s, st] = CallWorker<v1::Reward>(reward, own, &v1::Reward::Stub::Score, score);
  std::cout << "idle worker answers: Generate " << absl::FormatDuration(gt) << ", UpdateWeights "
            << absl::FormatDuration(ut) << ", Score " << absl::FormatDuration(st) << std::endl;
  expect_idle(g, gt, "Generate");
  expect_idle(u, ut, "UpdateWeights");
  expect_idle(s, st, "Score");
  EXPECT_EQ(CallWorker<v1::Rollout>(rollout, "", &v1::Rollout::Stub::Generate, generate).first, Code::UNAUTHENTICATED);
}

// The same cluster with TLS on every link: the coordinator's (mutual) and the workers' own servers, which require a
// certificate from the cluster's CA besides the job's credential. The job runs over it, and strangers get nowhere.
class TlsClusterTest : public ClusterTest {
 protected:
  bool Secured() const override { return true; }
  bool Tls() const override { return true; }
};

TEST_F(TlsClusterTest, JobsRunOverTlsAndWorkersRequirePeerCertificates) {
  auto submitted = client_->Submit(Spec("tls"), "tls");
  ASSERT_TRUE(submitted.ok()) << submitted.status();
  const std::string id = submitted->id();
  ASSERT_TRUE(WaitStep(id, 2)) << Logs();
  std::string rollout;
  auto listed = client_->ListWorkers();
  ASSERT_TRUE(listed.ok()) << listed.status();
  for (const v1::WorkerStatus& w : listed->workers()) {
    if (w.job_id() == id && w.assigned_role() == v1::ROLE_ROLLOUT) rollout = w.worker().address();
  }
  ASSERT_FALSE(rollout.empty());
  const std::string ca = ReadFile(root_ + "/tls/ca.pem").value();
  grpc::SslCredentialsOptions no_cert;
  no_cert.pem_root_certs = ca;
  grpc::SslCredentialsOptions with_cert = no_cert;
  with_cert.pem_cert_chain = ReadFile(root_ + "/tls/client.pem").value();
  with_cert.pem_private_key = ReadFile(root_ + "/tls/client.key").value();
  v1::GetInfoRequest info;
  using Code = grpc::StatusCode;
  // Plaintext, and TLS without a client certificate, never reach the handler.
  EXPECT_EQ(CallWorker<v1::Rollout>(rollout, kWorkerToken, &v1::Rollout::Stub::GetInfo, info).first, Code::UNAVAILABLE);
  EXPECT_EQ(
      CallWorker<v1::Rollout>(rollout, kWorkerToken, &v1::Rollout::Stub::GetInfo, info, grpc::SslCredentials(no_cert))
          .first,
      Code::UNAVAILABLE);
  // A certificate of the cluster's CA gets as far as the credential check.
  auto tls = grpc::SslCredentials(with_cert);
  EXPECT_EQ(CallWorker<v1::Rollout>(rollout, "", &v1::Rollout::Stub::GetInfo, info, tls).first, Code::UNAUTHENTICATED);
  EXPECT_EQ(CallWorker<v1::Rollout>(rollout, kWorkerToken, &v1::Rollout::Stub::GetInfo, info, tls).first, Code::OK);

  v1::Job done = WaitDone(id);
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.DebugString() << Logs();
  EXPECT_EQ(done.attempt(), 1u);
  EXPECT_EQ(MaxMetric("tls", "weights/version"), 8.0);  // every step's weights reached the rollout worker
}

}  // namespace
}  // namespace alignd
