// TLS and mutual TLS between JobClient and CoordinatorServer, with certificates this test makes with openssl
// (a CA, a server certificate for 127.0.0.1/localhost, a client certificate, and a second, untrusted CA).
#include <stdlib.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "coordinator/coordinator_server.h"
#include "coordinator/job_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace alignd::coordinator {
namespace {

constexpr char kSpec[] = "name: tiny\nalgorithm: sft\ndata:\n  train: t.jsonl\n";

class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(::testing::TempDir() + "/tls");
    const std::string d = *dir_;
    const std::string script = absl::StrCat(
        "set -e; mkdir -p ", d, "; cd ", d, ";",
        "ca() { openssl req -x509 -newkey rsa:2048 -nodes -keyout $1.key -out $1.pem -days 2 -subj /CN=$1 "
        ">/dev/null 2>&1; };",
        "leaf() { openssl req -newkey rsa:2048 -nodes -keyout $1.key -out $1.csr -subj /CN=$1 >/dev/null 2>&1;",
        "  printf \"$3\" > $1.ext;",
        "  openssl x509 -req -in $1.csr -CA $2.pem -CAkey $2.key -CAcreateserial -out $1.pem -days 2 "
        "-extfile $1.ext >/dev/null 2>&1; };",
        "ca ca; ca other;",
        "leaf server ca 'subjectAltName=IP:127.0.0.1,DNS:localhost\\nextendedKeyUsage=serverAuth\\n';",
        "leaf client ca 'extendedKeyUsage=clientAuth\\n';", "leaf stranger other 'extendedKeyUsage=clientAuth\\n';");
    have_openssl_ = system(script.c_str()) == 0;
  }

  void SetUp() override {
    if (!have_openssl_) GTEST_SKIP() << "openssl could not make test certificates";
  }

  std::string File(const std::string& name) const { return *dir_ + "/" + name; }

  std::unique_ptr<CoordinatorServer> Serve(bool mutual) {
    CoordinatorServer::Options options;
    options.tls_cert_file = File("server.pem");
    options.tls_key_file = File("server.key");
    if (mutual) options.tls_client_ca_file = File("ca.pem");
    auto server = CoordinatorServer::Create(options);
    EXPECT_TRUE(server.ok()) << server.status();
    return server.ok() ? std::move(*server) : nullptr;
  }

  absl::Status Submit(const CoordinatorServer& server, JobClient::Options options) {
    options.address = absl::StrCat("127.0.0.1:", server.port());
    options.timeout = absl::Seconds(10);
    auto client = JobClient::Connect(options);
    if (!client.ok()) return client.status();
    return (*client)->Submit(kSpec, "").status();
  }

  static std::string* dir_;
  static bool have_openssl_;
};

std::string* TlsTest::dir_ = nullptr;
bool TlsTest::have_openssl_ = false;

TEST_F(TlsTest, ClientThatTrustsTheCaTalksTls) {
  auto server = Serve(/*mutual=*/false);
  ASSERT_NE(server, nullptr);
  JobClient::Options options;
  options.tls_ca_file = File("ca.pem");
  EXPECT_TRUE(Submit(*server, options).ok());
}

TEST_F(TlsTest, MutualTlsAcceptsAClientCertificateFromTheCa) {
  auto server = Serve(/*mutual=*/true);
  ASSERT_NE(server, nullptr);
  JobClient::Options options;
  options.tls_ca_file = File("ca.pem");
  options.tls_cert_file = File("client.pem");
  options.tls_key_file = File("client.key");
  EXPECT_TRUE(Submit(*server, options).ok());
}

TEST_F(TlsTest, TokenMayTravelOverTlsToARemoteAddress) {
  JobClient::Options options;
  options.address = "coordinator.example.com:7070";
  options.token = "secret-token-0123456789";
  options.tls_ca_file = File("ca.pem");
  EXPECT_TRUE(JobClient::Connect(options).ok());
}

// Error paths.

TEST_F(TlsTest, PlaintextClientIsRefused) {
  auto server = Serve(/*mutual=*/false);
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(Submit(*server, JobClient::Options{}).code(), absl::StatusCode::kUnavailable);
}

TEST_F(TlsTest, ServerFromAnotherCaIsNotTrusted) {
  auto server = Serve(/*mutual=*/false);
  ASSERT_NE(server, nullptr);
  JobClient::Options options;
  options.tls_ca_file = File("other.pem");
  EXPECT_EQ(Submit(*server, options).code(), absl::StatusCode::kUnavailable);
}

TEST_F(TlsTest, MutualTlsRefusesClientsWithoutOrWithAStrangersCertificate) {
  auto server = Serve(/*mutual=*/true);
  ASSERT_NE(server, nullptr);
  JobClient::Options without;
  without.tls_ca_file = File("ca.pem");
  EXPECT_EQ(Submit(*server, without).code(), absl::StatusCode::kUnavailable);
  JobClient::Options stranger = without;
  stranger.tls_cert_file = File("stranger.pem");
  stranger.tls_key_file = File("stranger.key");
  EXPECT_EQ(Submit(*server, stranger).code(), absl::StatusCode::kUnavailable);
}

TEST_F(TlsTest, InconsistentTlsOptionsAreInvalidArgument) {
  CoordinatorServer::Options key_missing;
  key_missing.tls_cert_file = File("server.pem");
  EXPECT_EQ(CoordinatorServer::Create(key_missing).status().code(), absl::StatusCode::kInvalidArgument);
  CoordinatorServer::Options ca_only;
  ca_only.tls_client_ca_file = File("ca.pem");
  EXPECT_EQ(CoordinatorServer::Create(ca_only).status().code(), absl::StatusCode::kInvalidArgument);
  CoordinatorServer::Options missing_file;
  missing_file.tls_cert_file = File("nope.pem");
  missing_file.tls_key_file = File("nope.key");
  EXPECT_EQ(CoordinatorServer::Create(missing_file).status().code(), absl::StatusCode::kNotFound);
  JobClient::Options cert_without_ca;
  cert_without_ca.address = "127.0.0.1:1";
  cert_without_ca.tls_cert_file = File("client.pem");
  cert_without_ca.tls_key_file = File("client.key");
  EXPECT_EQ(JobClient::Connect(cert_without_ca).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace alignd::coordinator
