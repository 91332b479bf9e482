// Weight sync: how fast a learner publishes a model to a rollout worker over Gloo on loopback, against a plain TCP
// socket copy of the same bytes in the same run, and how much a LoRA-only version carries.
//
// Two processes, as in a real job: this process is learner rank 0; it spawns itself (/proc/self/exe --role=receiver)
// as the rollout worker, rank 1 of a WeightBroadcastGroup, which holds its own model (different weights) with the
// same LoRA adapters attached, as node/rollout_runner.cc does. The path is alignd's own: PackWeights (as
// WeightPublisher::Publish does, 64 MiB buckets), WeightBroadcastGroup::Send / Receive, ApplyWeightUpdate (checksum
// check, then the copy into the engine's parameters, between Generate calls). The gRPC announcement that Publish
// sends beside the broadcast is left out (a few hundred bytes; the control plane bench measures RPC latency).
//
// Each repetition, in one sequence that both processes know from their flags:
//   1. TCP: the learner writes B bytes (B = the model's bucket bytes) on a 127.0.0.1 socket, the receiver reads
//      them into a buffer of its own and answers one byte; timed from the first write to the answer.
//   2. Full sync: pack the model, then Send; the receiver Receives, applies, and writes its steady-clock time
//      (CLOCK_MONOTONIC, common to both processes) to a pipe. Timed from Send's start to that time.
// then the LoRA-only versions (rank 8 on q_proj, v_proj). At the end the receiver repacks its parameters and
// reports their checksums, which must equal the learner's: the weights arrived and were applied bit for bit.
//
// Extra flags: --bucket_mb=N (64), --sockbuf=BYTES (0: the kernel's autotuning, which Gloo also gets),
// --recycle=0 (the receiver frees each version's buckets instead of handing them back to the group for the next one),
// --debug_breakdown=1 (the receiver times a second checksum pass and copy after each version, untimed, on stderr).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench/bench_util.h"
#include "collective/weight_broadcast.h"
#include "common/model/compute_threads.h"
#include "common/model/model_config.h"
#include "common/model/peft.h"
#include "common/model/transformer.h"
#include "common/text/tokenizer.h"
#include "rollout/engine.h"
#include "rollout/weight_update.h"

extern char** environ;

namespace alignd::bench {
namespace {

using rollout::PackedWeights;
using Named = std::vector<std::pair<std::string, at::Tensor>>;

constexpr uint64_t kBucketBytes = uint64_t{64} << 20;  // WeightPublisher::Publish's
constexpr char kAdapter[] = "job";                     // learner::kJobAdapter
constexpr int kIoTimeoutSeconds = 120;

void Check(const absl::Status& s, const std::string& what) {
  if (!s.ok()) Die(absl::StrCat(what, ": ", s.ToString()));
}

// A Llama of about 80M fp32 parameters (~320 MB), untied as most Llamas are; --smoke: a tiny one.
ModelConfig BenchConfig(const Args& a) {
  ModelConfig c = a.smoke ? TinyLlamaConfig(512, 64, 2, 4, 4, 128) : TinyLlamaConfig(32000, 640, 8, 10, 10, 2048);
  c.tie_word_embeddings = false;
  return c;
}

LoraConfig BenchLora(uint64_t seed) {
  LoraConfig l;
  l.target_modules = {"q_proj", "v_proj"};
  l.r = 8;
  l.alpha = 16;
  l.seed = seed;
  return l;
}

Named Parameters(CausalLM& model) {
  Named out;
  for (const auto& p : model->named_parameters()) out.emplace_back(p.key(), p.value().detach());
  return out;
}

// ---- socket helpers (blocking, with timeouts so that nothing hangs) ----

void SetTimeouts(int fd) {
  timeval tv{kIoTimeoutSeconds, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

void SetBuffers(int fd, int bytes) {
  if (bytes <= 0) return;  // 0: the kernel's autotuning
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof(bytes));
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes));
}

void WriteAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w <= 0) Die(absl::StrCat("tcp send: ", std::strerror(errno)));
    p += w;
    n -= static_cast<size_t>(w);
  }
}

void ReadAll(int fd, char* p, size_t n) {
  while (n > 0) {
    ssize_t r = ::recv(fd, p, n, 0);
    if (r <= 0) Die(absl::StrCat("tcp recv: ", r == 0 ? "peer closed" : std::strerror(errno)));
    p += r;
    n -= static_cast<size_t>(r);
  }
}

int Listen(uint16_t* port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || ::listen(fd, 1) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    Die(absl::StrCat("tcp listen: ", std::strerror(errno)));
  }
  *port = ntohs(addr.sin_port);
  return fd;
}

int Accept(int listen_fd, int sockbuf) {
  pollfd p{listen_fd, POLLIN, 0};
  if (::poll(&p, 1, kIoTimeoutSeconds * 1000) != 1) Die("tcp accept: the receiver did not connect");
  int fd = ::accept(listen_fd, nullptr, nullptr);
  if (fd < 0) Die(absl::StrCat("tcp accept: ", std::strerror(errno)));
  SetBuffers(fd, sockbuf);
  SetTimeouts(fd);
  return fd;
}

int Connect(uint16_t port, int sockbuf) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  SetBuffers(fd, sockbuf);  // before connect, so that the window scale covers them
  SetTimeouts(fd);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    Die(absl::StrCat("tcp connect: ", std::strerror(errno)));
  }
  return fd;
}

// One line from the receiver's report pipe, or death after the timeout.
std::string ReadLine(FILE* f, int fd) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, kIoTimeoutSeconds * 1000) != 1) Die("the receiver stopped reporting");
  char buf[512];
  if (std::fgets(buf, sizeof(buf), f) == nullptr) Die("the receiver exited early (its output is above)");
  return buf;
}

// ---- the receiver (rollout worker) ----

int RunReceiver(const Args& a) {
  SetComputeThreads(a.threads);
  const int report_fd = static_cast<int>(a.Int("report_fd", -1));
  const int64_t rounds = a.Int("rounds", 0), lora_rounds = a.Int("lora_rounds", 0);
  const int64_t tcp_bytes = a.Int("tcp_bytes", 0);
  FILE* report = fdopen(report_fd, "w");
  if (report == nullptr) Die("receiver: no report pipe");

  CausalLM model(BenchConfig(a));
  model->InitWeights(1);
  model->eval();
  auto peft = PeftModel::CreateLora(model, BenchLora(1));
  Check(peft.status(), "receiver: LoRA");
  rollout::AdapterTargets adapters;
  for (auto& [name, t] : (*peft)->named_parameters()) adapters[kAdapter][name] = t;
  rollout::Engine::Options eo;
  eo.model = model;
  eo.tokenizer = std::shared_ptr<const Tokenizer>(MakeByteTokenizer());
  auto engine = rollout::Engine::Create(std::move(eo));
  Check(engine.status(), "receiver: engine");

  collective::WeightBroadcastGroup::Options go;
  go.rank = 1;
  go.port = static_cast<uint16_t>(a.Int("broadcast_port", 0));
  go.timeout = absl::Seconds(kIoTimeoutSeconds);
  auto group = collective::WeightBroadcastGroup::Create(go);
  Check(group.status(), "receiver: group");
  Check((*group)->Join(), "receiver: join");
  int tcp = Connect(static_cast<uint16_t>(a.Int("tcp_port", 0)), static_cast<int>(a.Int("sockbuf", 0)));
  std::string sink(static_cast<size_t>(tcp_bytes), '\0');

  auto receive_one = [&] {
    absl::StatusOr<PackedWeights> got = (*group)->Receive();
    Check(got.status(), "receiver: Receive");
    const double received = NowSeconds();
    // As RolloutService::UpdateWeights does: the digest Receive computed on the way saves a second pass.
    Check(rollout::ApplyWeightUpdate(**engine, got->manifest, got->buckets, &adapters, got->buckets_checksum),
          "receiver: apply");
    const double applied = NowSeconds();
    if (a.Int("debug_breakdown", 0)) {  // untimed: what ApplyWeightUpdate's two halves cost, done again
      const double h0 = NowSeconds();
      std::string sum = rollout::BucketsChecksum(got->buckets, got->manifest.checksum_algorithm());
      const double h1 = NowSeconds();
      rollout::NamedTensors params;
      for (const auto& p : model->named_parameters()) params.emplace(p.key(), p.value());
      if (got->manifest.adapter().empty()) rollout::CopyInto(got->manifest, got->buckets, params);
      const double h2 = NowSeconds();
      std::fprintf(stderr, "receiver: checksum %.3f s, copy %.3f s\n", h1 - h0, h2 - h1);
    }
    // As RolloutService::UpdateWeights does, after the timed window; --recycle=0 frees them instead (the A/B).
    if (a.Int("recycle", 1)) (*group)->Recycle(std::move(got->buckets));
    std::fprintf(report, "%.9f %.9f %llu\n", received, applied,
                 static_cast<unsigned long long>((*engine)->weight_version()));
    std::fflush(report);
  };
  for (int64_t i = 0; i < rounds; ++i) {
    ReadAll(tcp, sink.data(), sink.size());
    WriteAll(tcp, "k", 1);
    receive_one();
  }
  for (int64_t i = 0; i < lora_rounds; ++i) receive_one();
  // Untimed: what the engine now holds, base and adapter, as checksums of the same packing the learner used.
  Named base = Parameters(model);
  std::fprintf(report, "%s %s\n", rollout::PackWeights(base, 1, kBucketBytes)->manifest.checksum().c_str(),
               rollout::PackWeights((*peft)->named_parameters(), 1, kBucketBytes)->manifest.checksum().c_str());
  std::fclose(report);
  ::close(tcp);
  return 0;
}

// ---- the learner ----

struct Arrival {
  double received = 0, applied = 0;
  uint64_t version = 0;
};

Arrival ParseArrival(const std::string& line) {
  Arrival a;
  std::istringstream in(line);
  if (!(in >> a.received >> a.applied >> a.version)) Die(absl::StrCat("bad report line: ", line));
  return a;
}

uint64_t TotalBytes(const PackedWeights& p) {
  uint64_t n = 0;
  for (const std::string& b : p.buckets) n += b.size();
  return n;
}

int RunLearner(const Args& a, char* self) {
  SetComputeThreads(a.threads);
  const uint64_t bucket_bytes = static_cast<uint64_t>(a.Int("bucket_mb", 64)) << 20;
  const int sockbuf = static_cast<int>(a.Int("sockbuf", 0));
  Report report("weight_sync", a);
  ModelConfig config = BenchConfig(a);
  CausalLM model(config);
  model->InitWeights(2);
  auto peft = PeftModel::CreateLora(model, BenchLora(2));
  Check(peft.status(), "learner: LoRA");
  {
    torch::NoGradGuard no_grad;  // lora_B starts at zero; a trained adapter has both halves non-zero
    for (torch::Tensor& t : (*peft)->parameters()) t.normal_(0, 0.02);
  }
  Named full = Parameters(model);
  Named lora = (*peft)->named_parameters();
  const uint64_t full_bytes = TotalBytes(*rollout::PackWeights(full, 1, bucket_bytes));
  const uint64_t lora_bytes = TotalBytes(*rollout::PackWeights(lora, 1, bucket_bytes));

  auto group = collective::WeightBroadcastGroup::Create({});  // rank 0 on 127.0.0.1, port chosen by the OS
  Check(group.status(), "learner: group");
  uint16_t tcp_port = 0;
  int listen_fd = Listen(&tcp_port);
  int pipe_fds[2];
  if (::pipe(pipe_fds) != 0) Die("pipe");
  const int64_t rounds = a.warmup + a.reps;
  std::vector<std::string> argv_s = {self,
                                     "--role=receiver",
                                     absl::StrCat("--threads=", a.threads),
                                     absl::StrCat("--broadcast_port=", (*group)->port()),
                                     absl::StrCat("--tcp_port=", tcp_port),
                                     absl::StrCat("--tcp_bytes=", full_bytes),
                                     absl::StrCat("--sockbuf=", sockbuf),
                                     absl::StrCat("--report_fd=", pipe_fds[1]),
                                     absl::StrCat("--rounds=", rounds),
                                     absl::StrCat("--lora_rounds=", rounds),
                                     absl::StrCat("--debug_breakdown=", a.Int("debug_breakdown", 0)),
                                     absl::StrCat("--recycle=", a.Int("recycle", 1))};
  if (a.smoke) argv_s.push_back("--smoke");
  std::vector<char*> argv;
  for (std::string& s : argv_s) argv.push_back(s.data());
  argv.push_back(nullptr);
  pid_t child = 0;
  if (posix_spawn(&child, "/proc/self/exe", nullptr, nullptr, argv.data(), environ) != 0) Die("spawn");
  ::close(pipe_fds[1]);
  FILE* from_child = fdopen(pipe_fds[0], "r");
  std::setvbuf(from_child, nullptr, _IONBF, 0);  // ReadLine polls the fd: no lines may hide in a stdio buffer

  Check((*group)->Join(), "learner: join");
  int tcp = Accept(listen_fd, sockbuf);
  std::string source(full_bytes, '\0');
  for (size_t i = 0; i < source.size(); i += 4096) source[i] = static_cast<char>(i >> 12);

  std::vector<double> tcp_gbps, sync_s, sync_gbps, pack_s, send_s, arrive_s, apply_s, publish_s;
  uint64_t version = 0;
  std::string last_full_sha, last_lora_sha;
  auto sync_one = [&](const Named& tensors, const std::string& adapter, std::vector<double>* out_s, std::string* sha) {
    const double t_pack = NowSeconds();
    absl::StatusOr<PackedWeights> packed = rollout::PackWeights(tensors, ++version, bucket_bytes);
    Check(packed.status(), "learner: pack");
    packed->manifest.set_adapter(adapter);
    *sha = packed->manifest.checksum();
    const double t0 = NowSeconds();
    Check((*group)->Send(*packed), "learner: Send");
    const double sent = NowSeconds();
    Arrival got = ParseArrival(ReadLine(from_child, pipe_fds[0]));
    if (got.version != version) Die(absl::StrCat("receiver at version ", got.version, ", not ", version));
    out_s->push_back(got.applied - t0);
    pack_s.push_back(t0 - t_pack);
    send_s.push_back(sent - t0);
    arrive_s.push_back(got.received - t0);
    apply_s.push_back(got.applied - got.received);
    publish_s.push_back(got.applied - t_pack);
  };
  std::vector<double> full_s;
  for (int64_t i = 0; i < rounds; ++i) {
    const double t0 = NowSeconds();
    WriteAll(tcp, source.data(), source.size());
    char ack = 0;
    ReadAll(tcp, &ack, 1);
    const double tcp_s = NowSeconds() - t0;
    std::vector<double> one;
    sync_one(full, "", &one, &last_full_sha);
    if (i < a.warmup) continue;
    tcp_gbps.push_back(full_bytes / tcp_s / 1e9);
    full_s.push_back(one[0]);
    sync_gbps.push_back(full_bytes / one[0] / 1e9);
  }
  // The breakdown of the measured full syncs only.
  auto measured = [&](std::vector<double>& v) { return std::vector<double>(v.begin() + a.warmup, v.begin() + rounds); };
  std::vector<double> pack_m = measured(pack_s), send_m = measured(send_s), arrive_m = measured(arrive_s),
                      apply_m = measured(apply_s), publish_m = measured(publish_s);
  std::vector<double> lora_s;
  for (int64_t i = 0; i < rounds; ++i) {
    std::vector<double> one;
    sync_one(lora, kAdapter, &one, &last_lora_sha);
    if (i >= a.warmup) lora_s.push_back(one[0]);
  }
  std::istringstream final_line(ReadLine(from_child, pipe_fds[0]));
  std::string child_full, child_lora;
  final_line >> child_full >> child_lora;
  int wstatus = 0;
  if (waitpid(child, &wstatus, 0) != child || !WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
    Die("the receiver failed");
  }
  // The learner's packing of the same tensors under bucket_bytes may split differently from the receiver's 64 MiB;
  // the checksum covers the concatenated bytes either way.
  if (child_full != last_full_sha || child_lora != last_lora_sha) {
    Die(absl::StrCat("the receiver's weights differ: ", child_full, " / ", child_lora));
  }
  ::close(tcp);
  ::close(listen_fd);
  std::fclose(from_child);

  auto& cfg = report.config();
  cfg["model"] = absl::StrCat("llama untied, vocab ", config.vocab_size, ", hidden ", config.hidden_size, ", ",
                              config.num_layers, " layers, intermediate ", config.intermediate_size);
  cfg["parameters"] = config.NumParameters();
  cfg["dtype"] = "float32";
  cfg["bucket_bytes"] = bucket_bytes;
  cfg["transport"] = "c10d ProcessGroupGloo broadcast on 127.0.0.1 (collective/weight_broadcast.h), 2 ranks";
  cfg["receiver"] = "separate process (posix_spawn of this binary): Receive + ApplyWeightUpdate into an Engine";
  cfg["receiver_recycles_buckets"] = a.Int("recycle", 1) != 0;
  cfg["tcp_sockbuf_bytes"] = sockbuf == 0 ? std::string("kernel autotuning") : std::to_string(sockbuf);
  cfg["lora"] = "r 8 on q_proj, v_proj";
  const std::string window =
      "from Send's start to the receiver's ApplyWeightUpdate returning (SHA-256 verified, copied)";
  report.Add("weight_sync_gb_per_s", "GB/s", sync_gbps, true, window);
  report.Add("weight_sync_seconds", "s", full_s, false, window);
  report.Add("weight_sync_bytes", "bytes", std::vector<double>(full_s.size(), full_bytes), false);
  report.Add("full_sync_bytes", "bytes", std::vector<double>(full_s.size(), full_bytes), false);
  report.Add("tcp_loopback_gb_per_s", "GB/s", tcp_gbps, true,
             "one socket on 127.0.0.1 between the two processes, the same byte count, until a 1-byte answer");
  report.Add("lora_sync_bytes", "bytes", std::vector<double>(lora_s.size(), lora_bytes), false);
  report.Add("lora_sync_seconds", "s", lora_s, false, window);
  report.Add("weight_sync_pack_seconds", "s", pack_m, false, "PackWeights (copy into buckets + SHA-256), before Send");
  report.Add("weight_sync_send_seconds", "s", send_m, false, "Send on the learner");
  report.Add("weight_sync_receive_seconds", "s", arrive_m, false, "Send's start to Receive returning on the receiver");
  report.Add("weight_sync_apply_seconds", "s", apply_m, false, "ApplyWeightUpdate on the receiver (SHA-256 + copy)");
  report.Add("weight_publish_seconds", "s", publish_m, false,
             "PackWeights + the sync: WeightPublisher::Publish's work");
  return report.Write();
}

}  // namespace
}  // namespace alignd::bench

int main(int argc, char** argv) {
  alignd::bench::Args args = alignd::bench::ParseArgs(argc, argv);
  auto role = args.extra.find("role");
  if (role != args.extra.end() && role->second == "receiver") return alignd::bench::RunReceiver(args);
  return alignd::bench::RunLearner(args, argv[0]);
}
