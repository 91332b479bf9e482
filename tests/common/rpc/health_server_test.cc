#include "common/rpc/health_server.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/codegen/client_unary_call.h>

#include <chrono>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace alignd {
namespace {

// Calls `method` on 127.0.0.1:`port` in plaintext with an empty request, as a kubelet's grpc: probe calls
// /grpc.health.v1.Health/Check (HealthCheckRequest{service: ""} is the empty message); the response's bytes go to
// `response_bytes`: "\x08\x01" is SERVING, "\x08\x02" NOT_SERVING.
grpc::Status Call(int port, const char* method, std::string* response_bytes) {
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials());
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::Slice empty("");
  grpc::ByteBuffer request(&empty, 1), response;
  grpc::Status status = grpc::internal::BlockingUnaryCall<grpc::ByteBuffer, grpc::ByteBuffer>(
      channel.get(), grpc::internal::RpcMethod(method, grpc::internal::RpcMethod::NORMAL_RPC), &context, request,
      &response);
  if (!status.ok()) return status;
  std::vector<grpc::Slice> slices;
  if (!response.Dump(&slices).ok()) return grpc::Status(grpc::StatusCode::INTERNAL, "cannot read the response");
  response_bytes->clear();
  for (const auto& s : slices) response_bytes->append(reinterpret_cast<const char*>(s.begin()), s.size());
  return status;
}

grpc::Status Check(int port, std::string* response_bytes) {
  return Call(port, "/grpc.health.v1.Health/Check", response_bytes);
}

TEST(HealthServerTest, EmptyListenStartsNothing) {
  auto server = HealthServer::Start("");
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_EQ(*server, nullptr);
}

TEST(HealthServerTest, ServesThenReportsNotServing) {
  auto server = HealthServer::Start("127.0.0.1:0");
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_GT((*server)->port(), 0);
  std::string bytes;
  grpc::Status status = Check((*server)->port(), &bytes);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(bytes, std::string("\x08\x01", 2));
  (*server)->SetServing(false);
  status = Check((*server)->port(), &bytes);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(bytes, std::string("\x08\x02", 2));
}

TEST(HealthServerTest, ServesNothingElse) {
  auto server = HealthServer::Start("127.0.0.1:0");
  ASSERT_TRUE(server.ok()) << server.status();
  std::string bytes;
  grpc::Status status = Call((*server)->port(), "/alignd.v1.JobService/ListJobs", &bytes);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNIMPLEMENTED) << status.error_message();
}

TEST(HealthServerTest, PortInUseIsUnavailable) {
  auto first = HealthServer::Start("127.0.0.1:0");
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = HealthServer::Start(absl::StrCat("127.0.0.1:", (*first)->port()));
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable) << second.status();
  EXPECT_NE(second.status().message().find("--health-listen"), std::string::npos) << second.status();
}

}  // namespace
}  // namespace alignd
