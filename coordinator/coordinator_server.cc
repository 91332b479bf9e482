#include "coordinator/coordinator_server.h"

#include <glog/logging.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#ifdef ALIGND_HAVE_GRPC_REFLECTION
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#endif

#include "absl/strings/str_cat.h"
#include "common/base/file_util.h"
#include "common/base/status.h"
#include "common/metrics/rpc_metrics.h"
#include "coordinator/address.h"
#include "coordinator/job_service.h"
#include "coordinator/memory_job_store.h"
#include "coordinator/sqlite_job_store.h"
#include "coordinator/worker_service.h"

namespace alignd::coordinator {

namespace {

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials(const CoordinatorServer::Options& options) {
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
  }
  if (options.tls_cert_file.empty()) {
    if (!options.tls_client_ca_file.empty()) {
      return absl::InvalidArgumentError("--tls-client-ca needs --tls-cert and --tls-key");
    }
    return grpc::InsecureServerCredentials();
  }
  grpc::SslServerCredentialsOptions ssl;
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  ASSIGN_OR_RETURN(pair.cert_chain, ReadFile(options.tls_cert_file));
  ASSIGN_OR_RETURN(pair.private_key, ReadFile(options.tls_key_file));
  ssl.pem_key_cert_pairs.push_back(std::move(pair));
  if (!options.tls_client_ca_file.empty()) {
    ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadFile(options.tls_client_ca_file));
    ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(ssl);
}

}  // namespace

absl::StatusOr<std::unique_ptr<CoordinatorServer>> CoordinatorServer::Create(Options options) {
  if (options.listen.empty()) return absl::InvalidArgumentError("listen address is empty");
  if (options.max_receive_message_bytes <= 0 || options.max_send_message_bytes <= 0) {
    return absl::InvalidArgumentError("message size limits must be positive");
  }
  std::unique_ptr<CoordinatorServer> server(new CoordinatorServer());
  if (options.auth_tokens_file.empty()) {
    if (!IsLoopbackAddress(options.listen)) {
      return absl::InvalidArgumentError(
          absl::StrCat("listening on ", options.listen, ", which is not loopback, needs --auth-tokens"));
    }
    server->auth_ = std::make_unique<TokenAuthenticator>(TokenAuthenticator::AllowAll());
  } else {
    ASSIGN_OR_RETURN(TokenAuthenticator auth, TokenAuthenticator::FromFile(options.auth_tokens_file));
    server->auth_ = std::make_unique<TokenAuthenticator>(std::move(auth));
  }
  if (options.db_path.empty()) {
    server->store_ = std::make_unique<MemoryJobStore>();
  } else {
    ASSIGN_OR_RETURN(server->store_, SqliteJobStore::Open(options.db_path));
  }
  if (options.schedule_every <= absl::ZeroDuration()) return absl::InvalidArgumentError("schedule_every must be > 0");
  ASSIGN_OR_RETURN(server->workers_, WorkerRegistry::Create(options.workers));
  WorkerRegistry* workers = server->workers_.get();
  options.manager.capacity = [workers](v1::DeviceKind device) { return workers->FreeCapacity(device); };
  ASSIGN_OR_RETURN(server->manager_, JobManager::Create(server->store_.get(), options.manager));
  ASSIGN_OR_RETURN(int recovered, server->manager_->RecoverAfterRestart());
  if (recovered > 0) LOG(INFO) << recovered << " scheduled or running jobs will be placed again after the restart";
  server->scheduler_ = std::make_unique<Scheduler>(server->manager_.get(), workers);
  server->job_service_ = std::make_unique<JobServiceImpl>(server->manager_.get(), server->auth_.get());
  server->worker_service_ = std::make_unique<WorkerServiceImpl>(
      server->manager_.get(), workers, server->scheduler_.get(), server->auth_.get(), options.workers.lease_ttl);

  grpc::EnableDefaultHealthCheckService(true);
#ifdef ALIGND_HAVE_GRPC_REFLECTION
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
#endif
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> credentials, ServerCredentials(options));
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen, credentials, &server->port_);
  builder.SetMaxReceiveMessageSize(options.max_receive_message_bytes);
  builder.SetMaxSendMessageSize(options.max_send_message_bytes);
  builder.RegisterService(server->job_service_.get());
  builder.RegisterService(server->worker_service_.get());
  AddRpcMetrics(builder);
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.listen));
  }
  CoordinatorServer* self = server.get();
  server->metrics_ = metrics::Registry::Default().AddCollector(
      [self](std::vector<metrics::Sample>* out) { self->CollectMetrics(out); });
  server->ticker_ = std::thread([self, every = options.schedule_every] {
    while (!self->stop_ticking_.WaitForNotificationWithTimeout(every)) {
      auto tick = self->scheduler_->Tick();
      if (!tick.ok()) LOG(WARNING) << "scheduler: " << tick.status();
    }
  });
  LOG(INFO) << "coordinator listening on port " << server->port_
            << (options.db_path.empty() ? " (jobs in memory)" : " (jobs in " + options.db_path + ")")
            << (options.auth_tokens_file.empty() ? ", authentication off" : ", bearer tokens required")
            << (options.tls_cert_file.empty()        ? ", plaintext"
                : options.tls_client_ca_file.empty() ? ", TLS"
                                                     : ", mutual TLS");
  return server;
}

CoordinatorServer::~CoordinatorServer() {
  metrics_.reset();
  Shutdown(absl::ZeroDuration());
}

void CoordinatorServer::CollectMetrics(std::vector<metrics::Sample>* out) {
  // Jobs by state, and the progress of the running ones.
  std::map<v1::JobState, int64_t> by_state;
  for (int s = v1::JOB_STATE_PENDING; s <= v1::JobState_MAX; ++s) {
    if (v1::JobState_IsValid(s)) by_state[static_cast<v1::JobState>(s)] = 0;
  }
  JobQuery query;
  query.limit = 1000;
  while (true) {
    absl::StatusOr<std::vector<JobRecord>> jobs = store_->ListJobs(query);
    if (!jobs.ok()) {
      LOG(WARNING) << "metrics: listing jobs: " << jobs.status();
      return;
    }
    for (const JobRecord& j : *jobs) {
      ++by_state[j.state];
      if (j.state != v1::JOB_STATE_RUNNING) continue;
      out->push_back({"alignd_job_step",
                      "The last step a running job reported.",
                      "gauge",
                      {{"job", j.id}, {"name", j.name}},
                      static_cast<double>(j.step)});
      out->push_back({"alignd_job_total_steps",
                      "A running job's train.steps.",
                      "gauge",
                      {{"job", j.id}, {"name", j.name}},
                      static_cast<double>(j.total_steps)});
    }
    if (static_cast<int>(jobs->size()) < query.limit) break;
    query.after_seq = jobs->back().seq;
  }
  for (const auto& [state, n] : by_state) {
    out->push_back({"alignd_jobs",
                    "Jobs in the store, by state.",
                    "gauge",
                    {{"state", v1::JobState_Name(state)}},
                    static_cast<double>(n)});
  }
  // Workers and their leases.
  const int64_t now_ms = absl::ToUnixMillis(absl::Now());
  for (const WorkerRecord& w : workers_->List()) {
    std::string roles;
    for (int r : w.info.roles()) roles += (roles.empty() ? "" : ",") + v1::Role_Name(static_cast<v1::Role>(r));
    const metrics::Labels labels = {
        {"worker", w.info.worker_id()}, {"roles", roles}, {"job", w.job_id.empty() ? "" : w.job_id}};
    out->push_back({"alignd_worker_lease_remaining_seconds",
                    "Seconds until a registered worker's lease lapses without a heartbeat.", "gauge", labels,
                    static_cast<double>(w.lease_expires_ms - now_ms) / 1000.0});
  }
}

std::shared_ptr<grpc::Channel> CoordinatorServer::InProcessChannel() {
  return server_->InProcessChannel(grpc::ChannelArguments());
}

void CoordinatorServer::Shutdown(absl::Duration grace) {
  if (ticker_.joinable()) {
    stop_ticking_.Notify();
    ticker_.join();
  }
  if (server_ == nullptr) return;
  server_->Shutdown(absl::ToChronoTime(absl::Now() + grace));
}

void CoordinatorServer::Wait() {
  if (server_ != nullptr) server_->Wait();
}

}  // namespace alignd::coordinator
