// The `server` part type: an outside reward server, any implementation of alignd.v1.Reward (reward/registry.h).
#include <glog/logging.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/base/file_util.h"
#include "common/base/status.h"
#include "common/rpc/grpc_status.h"
#include "proto/alignd.grpc.pb.h"
#include "reward/registry.h"
#include "reward/score_proto.h"

namespace alignd::reward {

v1::ScoreRequest ScoreRequestFor(const std::vector<ScoreInput>& inputs, size_t begin, size_t end) {
  v1::ScoreRequest request;
  for (size_t i = begin; i < end; ++i) {
    v1::ScoreItem* item = request.add_items();
    item->set_prompt(inputs[i].prompt);
    item->set_response(inputs[i].response);
    item->mutable_fields()->insert(inputs[i].fields.begin(), inputs[i].fields.end());
  }
  return request;
}

namespace {

struct ServerOptions {
  std::string address;
  int64_t deadline_ms = 30000;
  int64_t retries = 2;
  int64_t max_items = 256;
  std::string token;  // read from token_file
  std::string part;   // "" = the total
};

bool Retryable(grpc::StatusCode code) {
  return code == grpc::StatusCode::UNAVAILABLE || code == grpc::StatusCode::DEADLINE_EXCEEDED ||
         code == grpc::StatusCode::RESOURCE_EXHAUSTED;
}

class ServerScorer : public Scorer {
 public:
  ServerScorer(ServerOptions options, std::shared_ptr<grpc::Channel> channel)
      : options_(std::move(options)), stub_(v1::Reward::NewStub(std::move(channel))) {}

  absl::StatusOr<std::vector<std::optional<double>>> ScoreBatch(const std::vector<ScoreInput>& inputs) override {
    std::vector<std::optional<double>> out;
    out.reserve(inputs.size());
    const size_t step = static_cast<size_t>(options_.max_items);
    for (size_t begin = 0; begin < inputs.size(); begin += step) {
      const size_t end = std::min(inputs.size(), begin + step);
      const v1::ScoreRequest request = ScoreRequestFor(inputs, begin, end);
      v1::ScoreResponse response;
      grpc::Status s;
      for (int64_t attempt = 0;; ++attempt) {
        grpc::ClientContext context;
        context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(options_.deadline_ms));
        if (!options_.token.empty()) context.AddMetadata("authorization", absl::StrCat("Bearer ", options_.token));
        response.Clear();
        s = stub_->Score(&context, request, &response);
        if (s.ok() || !Retryable(s.error_code()) || attempt >= options_.retries) break;
        LOG(WARNING) << "reward server " << options_.address << ": " << s.error_message() << "; retrying";
        std::this_thread::sleep_for(std::chrono::milliseconds(100 << std::min<int64_t>(attempt, 5)));
      }
      if (!s.ok()) {
        absl::Status status = FromGrpcStatus(s);
        return absl::Status(status.code(), absl::StrCat("reward server ", options_.address, ": ", status.message()));
      }
      if (static_cast<size_t>(response.scores_size()) != end - begin) {
        return absl::DataLossError(absl::StrCat("reward server ", options_.address, " answered ",
                                                response.scores_size(), " scores for ", end - begin, " items"));
      }
      for (const v1::Score& score : response.scores()) {
        if (options_.part.empty()) {
          out.push_back(score.total());
          continue;
        }
        auto it = score.parts().find(options_.part);
        out.push_back(it == score.parts().end() ? std::nullopt : std::optional<double>(it->second));
      }
    }
    return out;
  }

 private:
  ServerOptions options_;
  std::unique_ptr<v1::Reward::Stub> stub_;
};

absl::StatusOr<std::string> ReadPem(PartParams& params, const std::string& key, const std::string& path) {
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) return params.Error(key, text.status().message());
  return text;
}

absl::StatusOr<std::unique_ptr<Scorer>> MakeServer(PartParams& params, const ScorerContext* context) {
  ServerOptions o;
  std::string token_file, tls_ca, tls_cert, tls_key;
  RETURN_IF_ERROR(params.Require("address", &o.address));
  RETURN_IF_ERROR(params.Get("deadline_ms", &o.deadline_ms));
  RETURN_IF_ERROR(params.Get("retries", &o.retries));
  RETURN_IF_ERROR(params.Get("max_items", &o.max_items));
  RETURN_IF_ERROR(params.Get("part", &o.part));
  RETURN_IF_ERROR(params.Get("token_file", &token_file));
  RETURN_IF_ERROR(params.Get("tls_ca", &tls_ca));
  RETURN_IF_ERROR(params.Get("tls_cert", &tls_cert));
  RETURN_IF_ERROR(params.Get("tls_key", &tls_key));
  const size_t colon = o.address.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == o.address.size()) {
    return params.Error("address", absl::StrCat("\"", o.address, "\" is not host:port"));
  }
  if (o.deadline_ms < 1) return params.Error("deadline_ms", absl::StrCat("must be >= 1, got ", o.deadline_ms));
  if (o.retries < 0) return params.Error("retries", absl::StrCat("must be >= 0, got ", o.retries));
  if (o.max_items < 1) return params.Error("max_items", absl::StrCat("must be >= 1, got ", o.max_items));
  if (tls_cert.empty() != tls_key.empty()) {
    return params.Error(tls_cert.empty() ? "tls_cert" : "tls_key", "tls_cert and tls_key go together");
  }
  if (!tls_cert.empty() && tls_ca.empty()) return params.Error("tls_ca", "is required with tls_cert");
  if (context == nullptr) return std::unique_ptr<Scorer>();

  if (!token_file.empty()) {
    ASSIGN_OR_RETURN(std::string token, ReadPem(params, "token_file", token_file));
    o.token = std::string(absl::StripAsciiWhitespace(token));
    if (o.token.empty()) return params.Error("token_file", absl::StrCat(token_file, " is empty"));
  }
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (!tls_ca.empty()) {
    grpc::SslCredentialsOptions ssl;
    ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadPem(params, "tls_ca", tls_ca));
    if (!tls_cert.empty()) {
      ASSIGN_OR_RETURN(ssl.pem_cert_chain, ReadPem(params, "tls_cert", tls_cert));
      ASSIGN_OR_RETURN(ssl.pem_private_key, ReadPem(params, "tls_key", tls_key));
    }
    credentials = grpc::SslCredentials(ssl);
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  args.SetMaxSendMessageSize(64 << 20);
  auto channel = grpc::CreateCustomChannel(o.address, credentials, args);
  return std::unique_ptr<Scorer>(new ServerScorer(std::move(o), std::move(channel)));
}

}  // namespace

void RegisterServerPartType(Registry& registry) {
  absl::Status s = registry.Register(PartType{"server", MakeServer});
  CHECK(s.ok()) << s;
}

}  // namespace alignd::reward
