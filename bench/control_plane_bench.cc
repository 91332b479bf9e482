// Control plane: unary RPC latency to the coordinator and the heartbeat rate it sustains, on loopback.
//
// The coordinator runs in this process (CoordinatorServer::Create on 127.0.0.1:0, jobs in SQLite in a temporary
// folder as `alignd coordinator --db` keeps them, or in memory with --store=memory); every client talks to it over a
// real TCP socket, never the in-process channel.
//
//   RPC latency: one job submitted, then --calls sequential JobService.GetJob calls through JobClient (alignctl's
//   client: a deadline on every call) on one channel. Samples are each repetition's p50 and p99.
//   Heartbeats: --workers simulated workers, each on its own channel (its own TCP connection, as separate worker
//   processes have), register with WorkerService.Register and then write heartbeats on their Control stream as fast
//   as the stream accepts them for --seconds; then they half-close and wait for the stream's status. The
//   coordinator reads every message and renews the lease before it returns OK, so the count of heartbeats written
//   over the time until the last stream's OK is the rate the coordinator processed.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/barrier.h"
#include "absl/time/clock.h"
#include "bench/bench_util.h"
#include "coordinator/coordinator_server.h"
#include "coordinator/job_client.h"
#include "proto/alignd.grpc.pb.h"

namespace alignd::bench {
namespace {

constexpr char kSpec[] = R"(name: bench
algorithm: sft
data:
  train: data/toy/sft_train.jsonl
resources:
  learners: 1
)";

double Percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(q * (v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

// Each call gets its own channel (its own connection): gRPC shares a subchannel between channels with equal
// arguments unless told to keep a local pool.
std::shared_ptr<grpc::Channel> NewChannel(const std::string& address) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
}

template <typename Rep>
void SetDeadline(grpc::ClientContext* context, Rep timeout) {
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::duration_cast<std::chrono::system_clock::duration>(timeout));
}

// One repetition of the heartbeat test: the number of heartbeats the coordinator processed per second.
double HeartbeatRate(const std::string& address, int workers, double seconds) {
  std::atomic<int64_t> total{0};
  std::atomic<bool> failed{false};
  absl::Barrier* ready = new absl::Barrier(workers + 1);  // deleted by the last thread through Block()
  std::vector<std::thread> threads;
  std::vector<double> finished(workers, 0);
  for (int w = 0; w < workers; ++w) {
    threads.emplace_back([&, w] {
      auto stub = v1::WorkerService::NewStub(NewChannel(address));
      v1::RegisterWorkerRequest request;
      v1::WorkerInfo* info = request.mutable_worker();
      info->add_roles(v1::ROLE_REWARD);  // a role the benchmark's (cancelled) job never asks for
      info->set_device(v1::DEVICE_KIND_CPU);
      info->set_address(absl::StrCat("127.0.0.1:", 20000 + w));
      v1::RegisterWorkerResponse registered;
      grpc::ClientContext rc;
      SetDeadline(&rc, std::chrono::seconds(10));
      grpc::Status s = stub->Register(&rc, request, &registered);
      grpc::ClientContext sc;
      SetDeadline(&sc, std::chrono::seconds(30) + std::chrono::duration<double>(seconds));
      std::unique_ptr<grpc::ClientReaderWriter<v1::WorkerMessage, v1::CoordinatorMessage>> stream;
      if (s.ok()) {
        stream = stub->Control(&sc);
      } else {
        std::fprintf(stderr, "register: %s\n", s.error_message().c_str());
        failed = true;
      }
      if (ready->Block()) delete ready;
      if (!stream) return;
      v1::WorkerMessage beat;
      beat.set_lease_id(registered.lease_id());
      int64_t sent = 0;
      const double stop = NowSeconds() + seconds;
      while (NowSeconds() < stop) {
        beat.mutable_heartbeat()->set_unix_ms(absl::ToUnixMillis(absl::Now()));
        if (!stream->Write(beat)) break;
        ++sent;
      }
      stream->WritesDone();
      grpc::Status done = stream->Finish();
      finished[w] = NowSeconds();
      if (!done.ok()) {
        std::fprintf(stderr, "control stream: %s\n", done.error_message().c_str());
        failed = true;
      }
      total += sent;
    });
  }
  if (ready->Block()) delete ready;  // every worker registered and holds an open stream
  const double t0 = NowSeconds();
  for (auto& t : threads) t.join();
  if (failed) Die("a simulated worker failed");
  double end = *std::max_element(finished.begin(), finished.end());
  return total / (end - t0);
}

int Run(const Args& a) {
  const std::string store = a.Str("store", "sqlite");
  const int64_t calls = a.Int("calls", a.smoke ? 50 : 5000);
  const int workers = static_cast<int>(a.Int("workers", a.smoke ? 2 : 16));
  const double seconds = a.smoke ? 0.3 : static_cast<double>(a.Int("seconds", 3));
  Report report("control_plane", a);

  std::string dir = (std::filesystem::temp_directory_path() / "alignd-control-plane-XXXXXX").string();
  if (mkdtemp(dir.data()) == nullptr) Die("mkdtemp");
  coordinator::CoordinatorServer::Options so;
  so.listen = "127.0.0.1:0";
  if (store == "sqlite") so.db_path = dir + "/jobs.db";
  auto server = coordinator::CoordinatorServer::Create(so);
  if (!server.ok()) Die(server.status().ToString());
  const std::string address = absl::StrCat("127.0.0.1:", (*server)->port());

  coordinator::JobClient::Options co;
  co.address = address;
  co.timeout = absl::Seconds(5);
  auto client = coordinator::JobClient::Connect(co);
  if (!client.ok()) Die(client.status().ToString());
  auto job = (*client)->Submit(kSpec, "bench");
  if (!job.ok()) Die(absl::StrCat("submit: ", job.status().ToString()));

  std::vector<double> p50, p99, mean;
  std::vector<double> latencies_us(static_cast<size_t>(calls));
  auto one_rep = [&] {
    for (int64_t i = 0; i < calls; ++i) {
      const double t0 = NowSeconds();
      absl::StatusOr<v1::Job> got = (*client)->Get(job->id());
      latencies_us[i] = (NowSeconds() - t0) * 1e6;
      if (!got.ok()) Die(absl::StrCat("GetJob: ", got.status().ToString()));
    }
  };
  for (int i = 0; i < a.warmup; ++i) one_rep();
  for (int i = 0; i < a.reps; ++i) {
    one_rep();
    p50.push_back(Percentile(latencies_us, 0.50));
    p99.push_back(Percentile(latencies_us, 0.99));
    double sum = 0;
    for (double x : latencies_us) sum += x;
    mean.push_back(sum / latencies_us.size());
  }
  // The floor under any unary RPC on this machine: grpc.health.v1.Health/Check on the same server (gRPC's own
  // handler, an empty request), called the same way (a completion queue driven by the calling thread, as the sync
  // stub does). The gap to GetJob is what alignd's handler, auth check, store and proto conversion add.
  std::vector<double> floor_p50;
  {
    grpc::GenericStub generic(NewChannel(address));
    grpc::CompletionQueue cq;
    grpc::Slice empty("");
    const grpc::ByteBuffer request(&empty, 1);
    auto floor_rep = [&] {
      for (int64_t i = 0; i < calls; ++i) {
        const double t0 = NowSeconds();
        grpc::ClientContext context;
        SetDeadline(&context, std::chrono::seconds(5));
        auto call = generic.PrepareUnaryCall(&context, "/grpc.health.v1.Health/Check", request, &cq);
        call->StartCall();
        grpc::ByteBuffer response;
        grpc::Status status;
        call->Finish(&response, &status, reinterpret_cast<void*>(1));
        void* tag = nullptr;
        bool ok = false;
        if (!cq.Next(&tag, &ok) || !ok || !status.ok()) Die(absl::StrCat("Health/Check: ", status.error_message()));
        latencies_us[i] = (NowSeconds() - t0) * 1e6;
      }
    };
    for (int i = 0; i < a.warmup; ++i) floor_rep();
    for (int i = 0; i < a.reps; ++i) {
      floor_rep();
      floor_p50.push_back(Percentile(latencies_us, 0.50));
    }
    cq.Shutdown();
    void* tag = nullptr;
    bool ok = false;
    while (cq.Next(&tag, &ok)) {
    }
  }

  // No job for the simulated workers to take.
  if (auto c = (*client)->Cancel(job->id()); !c.ok()) Die(absl::StrCat("cancel: ", c.status().ToString()));

  std::vector<double> rates;
  for (int i = 0; i < a.warmup; ++i) HeartbeatRate(address, workers, seconds);
  for (int i = 0; i < a.reps; ++i) rates.push_back(HeartbeatRate(address, workers, seconds));

  (*server)->Shutdown(absl::Seconds(5));
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);

  auto& cfg = report.config();
  cfg["coordinator"] = "in-process CoordinatorServer on 127.0.0.1:0, no auth, no TLS";
  cfg["store"] = store == "sqlite" ? "SQLite in a temporary folder" : "in memory";
  cfg["rpc"] = "JobService.GetJob through JobClient (5 s deadline), sequential on one channel";
  cfg["calls_per_rep"] = calls;
  cfg["heartbeat_workers"] = workers;
  cfg["heartbeat_seconds"] = seconds;
  report.Add("rpc_p50_us", "us", p50, false, "median GetJob round trip of each repetition");
  report.Add("rpc_p99_us", "us", p99, false, "99th percentile GetJob round trip of each repetition");
  report.Add("rpc_mean_us", "us", mean, false);
  report.Add("rpc_floor_p50_us", "us", floor_p50, false,
             "median grpc.health.v1.Health/Check round trip on the same server: gRPC alone");
  report.Add("heartbeats_per_s", "1/s", rates, true,
             absl::StrCat(workers, " workers, each its own connection and Control stream, writing heartbeats for ",
                          seconds, " s; counted once the coordinator closed every stream OK"));
  return report.Write();
}

}  // namespace
}  // namespace alignd::bench

int main(int argc, char** argv) { return alignd::bench::Run(alignd::bench::ParseArgs(argc, argv)); }
