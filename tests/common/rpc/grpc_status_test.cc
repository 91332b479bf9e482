// The status conversion between absl and gRPC, and HandleRpc: an RPC body's absl::Status becomes the call's grpc::Status
// once, code and message kept.
#include "common/rpc/grpc_status.h"

#include <stdexcept>
#include <string>

#include "common/base/status.h"
#include "gtest/gtest.h"

namespace alignd {
namespace {

absl::StatusOr<int> Parse(const std::string& text) {
  if (text.empty()) return absl::InvalidArgumentError("text: empty");
  return static_cast<int>(text.size());
}

TEST(GrpcStatus, RoundTripsEveryCode) {
  for (int c = 0; c <= 16; ++c) {
    absl::Status s(static_cast<absl::StatusCode>(c), c == 0 ? "" : "msg");
    grpc::Status g = ToGrpcStatus(s);
    EXPECT_EQ(static_cast<int>(g.error_code()), c);
    EXPECT_EQ(FromGrpcStatus(g), s);
  }
}

TEST(HandleRpc, OkBodyIsOkAndRunsOnce) {
  int runs = 0;
  grpc::Status status = HandleRpc([&]() -> absl::Status {
    ++runs;
    return absl::OkStatus();
  });
  EXPECT_TRUE(status.ok());
  EXPECT_EQ(status.error_message(), "");
  EXPECT_EQ(runs, 1);
}

TEST(HandleRpc, KeepsEveryCodeAndMessage) {
  for (int c = 1; c <= 16; ++c) {
    const std::string message = "job j-1: code " + std::to_string(c);
    grpc::Status status =
        HandleRpc([&]() -> absl::Status { return absl::Status(static_cast<absl::StatusCode>(c), message); });
    EXPECT_EQ(static_cast<int>(status.error_code()), c);
    EXPECT_EQ(status.error_message(), message);
  }
}

TEST(HandleRpc, StatusMacrosReturnTheFirstError) {
  std::string written;
  auto body = [&](const std::string& text) {
    return HandleRpc([&]() -> absl::Status {
      ASSIGN_OR_RETURN(int size, Parse(text));
      RETURN_IF_ERROR(size > 3 ? absl::OutOfRangeError("text: longer than 3") : absl::OkStatus());
      written = text;
      return absl::OkStatus();
    });
  };
  grpc::Status empty = body("");
  EXPECT_EQ(empty.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(empty.error_message(), "text: empty");
  grpc::Status long_text = body("abcd");
  EXPECT_EQ(long_text.error_code(), grpc::StatusCode::OUT_OF_RANGE);
  EXPECT_EQ(written, "");
  EXPECT_TRUE(body("abc").ok());
  EXPECT_EQ(written, "abc");
}

TEST(HandleRpc, CatchesNoException) {
  // An exception is a bug past a module's edge; HandleRpc must not turn it into a status of its own choosing.
  EXPECT_THROW(HandleRpc([]() -> absl::Status { throw std::runtime_error("bug"); }), std::runtime_error);
}

}  // namespace
}  // namespace alignd
