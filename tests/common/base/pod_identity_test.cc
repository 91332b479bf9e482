#include "common/base/pod_identity.h"

#include <map>
#include <optional>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace alignd {
namespace {

using ::testing::HasSubstr;

// A pod's environment, as deploy/k8s sets it through the downward API.
class PodIdentityTest : public ::testing::Test {
 protected:
  void Set(const std::string& name, const std::string& value) { env_[name] = value; }

  // The pods of deploy/k8s: a learner of the StatefulSet, and a rollout worker of a Deployment.
  void LearnerPod(const std::string& name) {
    Set("POD_NAME", name);
    Set("POD_IP", "10.244.1.17");
    Set("ALIGND_STATEFULSET", "alignd-learner");
    Set("ALIGND_ADVERTISE_DOMAIN", "alignd-learner.alignd.svc.cluster.local");
  }
  void RolloutPod() {
    Set("POD_NAME", "alignd-rollout-7c9d8f5b4-24567");
    Set("POD_IP", "10.244.2.5");
    Set("ALIGND_ADVERTISE_DOMAIN", "alignd-rollout.alignd.svc.cluster.local");
  }

  absl::StatusOr<WorkerIdentity> Resolve(const std::string& advertise_host = "") {
    return ResolveWorkerIdentity(advertise_host, [this](const std::string& name) -> std::optional<std::string> {
      auto it = env_.find(name);
      if (it == env_.end()) return std::nullopt;
      return it->second;
    });
  }

  // Resolving must fail with INVALID_ARGUMENT and a message containing `part`.
  void ExpectInvalid(const std::string& part) {
    absl::StatusOr<WorkerIdentity> id = Resolve();
    ASSERT_EQ(id.status().code(), absl::StatusCode::kInvalidArgument) << id.status();
    EXPECT_THAT(id.status().message(), HasSubstr(part));
  }

  std::map<std::string, std::string> env_;
};

TEST_F(PodIdentityTest, OutsideAPodAdvertisesLoopback) {
  auto id = Resolve();
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->advertise_host, "127.0.0.1");
  EXPECT_EQ(id->pod_name, "");
  EXPECT_FALSE(id->ordinal.has_value());
  EXPECT_EQ(DescribePod(*id), "");
}

TEST_F(PodIdentityTest, StatefulSetPodAdvertisesItsStableName) {
  LearnerPod("alignd-learner-3");
  auto id = Resolve();
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->advertise_host, "alignd-learner-3.alignd-learner.alignd.svc.cluster.local");
  EXPECT_EQ(id->pod_name, "alignd-learner-3");
  EXPECT_EQ(id->ordinal, 3);
  EXPECT_EQ(DescribePod(*id), "pod alignd-learner-3, ordinal 3");
}

TEST_F(PodIdentityTest, OrdinalZeroAndLarge) {
  LearnerPod("alignd-learner-0");
  EXPECT_EQ(Resolve()->ordinal, 0);
  LearnerPod("alignd-learner-2147483647");
  EXPECT_EQ(Resolve()->ordinal, 2147483647);
}

TEST_F(PodIdentityTest, DeploymentPodAdvertisesItsIpUnderTheServiceDomain) {
  RolloutPod();
  auto id = Resolve();
  ASSERT_TRUE(id.ok()) << id.status();
  // The ReplicaSet's suffix may be all digits: without ALIGND_STATEFULSET it is not read as an ordinal.
  EXPECT_FALSE(id->ordinal.has_value());
  EXPECT_EQ(id->advertise_host, "10-244-2-5.alignd-rollout.alignd.svc.cluster.local");
  EXPECT_EQ(DescribePod(*id), "pod alignd-rollout-7c9d8f5b4-24567");
}

TEST_F(PodIdentityTest, Ipv6PodIpIsDashedUnderTheDomain) {
  RolloutPod();
  Set("POD_IP", "fd00:10:244::5");
  EXPECT_EQ(Resolve()->advertise_host, "fd00-10-244--5.alignd-rollout.alignd.svc.cluster.local");
}

TEST_F(PodIdentityTest, PodIpWithoutDomain) {
  Set("POD_NAME", "alignd-reward-5d4f-x2x4q");
  Set("POD_IP", "10.244.3.9");
  EXPECT_EQ(Resolve()->advertise_host, "10.244.3.9");
}

TEST_F(PodIdentityTest, FlagOrVariableWinsOverThePod) {
  LearnerPod("alignd-learner-1");
  auto id = Resolve("node-7.example.com");
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->advertise_host, "node-7.example.com");
  EXPECT_EQ(id->ordinal, 1);  // the pod is still checked and named
}

// ---- malformed pods: each names the variable and the value ----

TEST_F(PodIdentityTest, StatefulSetWithoutPodName) {
  Set("ALIGND_STATEFULSET", "alignd-learner");
  ExpectInvalid("ALIGND_STATEFULSET is \"alignd-learner\" but POD_NAME is not set");
}

TEST_F(PodIdentityTest, PodOfAnotherSet) {
  LearnerPod("alignd-rollout-3");
  ExpectInvalid("POD_NAME \"alignd-rollout-3\" is not a pod of StatefulSet \"alignd-learner\"");
}

TEST_F(PodIdentityTest, OrdinalThatIsNotANumber) {
  for (const char* name : {"alignd-learner-x", "alignd-learner-3a", "alignd-learner-03", "alignd-learner-2147483648",
                           "alignd-learner-99999999999", "alignd-learner"}) {
    SCOPED_TRACE(name);
    LearnerPod(name);
    ExpectInvalid("expected alignd-learner-<ordinal>");
  }
}

TEST_F(PodIdentityTest, PodNameThatIsNotADnsLabel) {
  for (const char* name :
       {"Alignd-learner-1", "alignd-learner-", "alignd.learner-1", "-alignd-1", "alignd_learner_1"}) {
    SCOPED_TRACE(name);
    Set("POD_NAME", name);
    ExpectInvalid("is not a pod name");
  }
}

TEST_F(PodIdentityTest, PodIpThatIsNotAnAddress) {
  RolloutPod();
  Set("POD_IP", "10.244.2");
  ExpectInvalid("POD_IP \"10.244.2\" is not an IP address");
}

TEST_F(PodIdentityTest, DomainThatIsNotADnsName) {
  RolloutPod();
  Set("ALIGND_ADVERTISE_DOMAIN", "alignd-rollout..svc");
  ExpectInvalid("ALIGND_ADVERTISE_DOMAIN \"alignd-rollout..svc\" is not a DNS name");
}

TEST_F(PodIdentityTest, DomainWithNothingToPutUnderIt) {
  Set("ALIGND_ADVERTISE_DOMAIN", "alignd-rollout.alignd.svc.cluster.local");
  ExpectInvalid("ALIGND_ADVERTISE_DOMAIN needs a name to put under it");
}

TEST_F(PodIdentityTest, Ipv6ThatMakesNoDnsLabel) {
  RolloutPod();
  Set("POD_IP", "::1");  // "--1" cannot start a label
  ExpectInvalid("advertised host \"--1.alignd-rollout.alignd.svc.cluster.local\" is not a DNS name");
}

TEST_F(PodIdentityTest, Ipv6OrPortCannotBeAdvertised) {
  Set("POD_IP", "fd00:10:244::5");
  ExpectInvalid("holds a ':'");
  env_.clear();
  auto id = Resolve("10.0.0.1:7071");
  EXPECT_EQ(id.status().code(), absl::StatusCode::kInvalidArgument) << id.status();
}

}  // namespace
}  // namespace alignd
