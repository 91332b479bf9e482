#include "collective/grpc_store.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <thread>

#include "absl/strings/str_cat.h"

namespace alignd::collective {
namespace {

using alignd::v1::StoreOp;
using alignd::v1::StoreRequest;
using alignd::v1::StoreResponse;

// Room for a call's round trip beyond the time its server side may wait.
constexpr std::chrono::milliseconds kCallMargin(10000);

std::string Bytes(const std::vector<uint8_t>& v) { return std::string(v.begin(), v.end()); }
std::vector<uint8_t> Vector(const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); }

StoreRequest Request(StoreOp op, std::vector<std::string> keys) {
  StoreRequest r;
  r.set_op(op);
  for (std::string& k : keys) r.add_keys(std::move(k));
  return r;
}

}  // namespace

GrpcStore::GrpcStore(const StoreEndpoint& endpoint, const std::chrono::milliseconds& timeout)
    : GrpcStore(endpoint,
                alignd::v1::Rendezvous::NewStub(grpc::CreateChannel(
                    endpoint.address, endpoint.channel ? endpoint.channel : grpc::InsecureChannelCredentials())),
                std::make_shared<std::atomic<bool>>(false), timeout) {}

GrpcStore::GrpcStore(const StoreEndpoint& endpoint, std::shared_ptr<alignd::v1::Rendezvous::Stub> stub,
                     std::shared_ptr<std::atomic<bool>> reached, const std::chrono::milliseconds& timeout)
    : c10d::Store(timeout), endpoint_(endpoint), stub_(std::move(stub)), reached_(std::move(reached)) {}

c10::intrusive_ptr<c10d::Store> GrpcStore::clone() {
  return c10::make_intrusive<GrpcStore>(endpoint_, stub_, reached_, timeout_);
}

StoreResponse GrpcStore::Call(StoreRequest request, std::chrono::milliseconds wait) {
  request.set_group(endpoint_.group);
  request.set_timeout_ms(static_cast<uint32_t>(std::max<int64_t>(1, wait.count())));
  const auto give_up = std::chrono::system_clock::now() + std::max(wait, timeout_);
  std::chrono::milliseconds backoff(20);
  while (true) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + wait + kCallMargin);
    context.AddMetadata("authorization", absl::StrCat("Bearer ", endpoint_.credential));
    StoreResponse response;
    grpc::Status status = stub_->Store(&context, request, &response);
    if (status.ok()) {
      reached_->store(true);
      return response;
    }
    // Before the first answer, UNAVAILABLE (the host is not up, or has not started the job) and PERMISSION_DENIED (the
    // host is still finishing another job or attempt, and this attempt's assignment is on its way to it) are retried:
    // the store will be there within the timeout, or the job is over.
    const bool not_yet = status.error_code() == grpc::StatusCode::UNAVAILABLE ||
                         status.error_code() == grpc::StatusCode::PERMISSION_DENIED;
    if (not_yet && !reached_->load() && std::chrono::system_clock::now() + backoff < give_up) {
      std::this_thread::sleep_for(backoff);
      backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
      continue;
    }
    C10_THROW_ERROR(DistStoreError,
                    absl::StrCat("rendezvous store at ", endpoint_.address, " (group \"", endpoint_.group, "\"), ",
                                 alignd::v1::StoreOp_Name(request.op()), ": ", status.error_message(), " [gRPC code ",
                                 static_cast<int>(status.error_code()), "]"));
  }
}

void GrpcStore::set(const std::string& key, const std::vector<uint8_t>& value) {
  StoreRequest r = Request(StoreOp::STORE_OP_SET, {key});
  r.set_value(Bytes(value));
  Call(std::move(r), timeout_);
}

std::vector<uint8_t> GrpcStore::compareSet(const std::string& key, const std::vector<uint8_t>& expected,
                                           const std::vector<uint8_t>& desired) {
  StoreRequest r = Request(StoreOp::STORE_OP_COMPARE_SET, {key});
  r.set_expected(Bytes(expected));
  r.set_value(Bytes(desired));
  return Vector(Call(std::move(r), timeout_).value());
}

std::vector<uint8_t> GrpcStore::get(const std::string& key) {
  return Vector(Call(Request(StoreOp::STORE_OP_GET, {key}), timeout_).value());
}

int64_t GrpcStore::add(const std::string& key, int64_t value) {
  StoreRequest r = Request(StoreOp::STORE_OP_ADD, {key});
  r.set_delta(value);
  return Call(std::move(r), timeout_).number();
}

bool GrpcStore::deleteKey(const std::string& key) {
  return Call(Request(StoreOp::STORE_OP_DELETE, {key}), timeout_).flag();
}

bool GrpcStore::check(const std::vector<std::string>& keys) {
  return Call(Request(StoreOp::STORE_OP_CHECK, keys), timeout_).flag();
}

int64_t GrpcStore::getNumKeys() { return Call(Request(StoreOp::STORE_OP_NUM_KEYS, {}), timeout_).number(); }

void GrpcStore::wait(const std::vector<std::string>& keys) { wait(keys, timeout_); }

void GrpcStore::wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& timeout) {
  Call(Request(StoreOp::STORE_OP_WAIT, keys), timeout);
}

}  // namespace alignd::collective
