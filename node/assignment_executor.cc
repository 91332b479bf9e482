#include "node/assignment_executor.h"

#include <glog/logging.h>  // torch-free: glog itself, not common/base/logging.h

#include <utility>

#include "absl/strings/str_cat.h"

namespace alignd::node {

bool IsRetryable(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kUnimplemented:
      return false;
    default:
      return true;
  }
}

JobIdentity IdentityOf(const v1::Assignment& assignment) { return {assignment.job_id(), assignment.attempt()}; }

absl::StatusOr<std::unique_ptr<AssignmentExecutor>> AssignmentExecutor::Create(Runners runners,
                                                                               std::shared_ptr<Clock> clock,
                                                                               Options options, ReportFn report) {
  if (!clock || !report) return absl::InvalidArgumentError("assignment executor: a clock and a report are required");
  for (const auto& [role, runner] : runners) {
    if (!runner) return absl::InvalidArgumentError(absl::StrCat("assignment executor: null runner for ", role));
  }
  if (options.peer_failure_grace < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("assignment executor: peer_failure_grace must be >= 0");
  }
  return std::unique_ptr<AssignmentExecutor>(
      new AssignmentExecutor(std::move(runners), std::move(clock), std::move(options), std::move(report)));
}

AssignmentExecutor::AssignmentExecutor(Runners runners, std::shared_ptr<Clock> clock, Options options, ReportFn report)
    : runners_(std::move(runners)),
      clock_(std::move(clock)),
      options_(std::move(options)),
      report_(std::move(report)) {}

AssignmentExecutor::~AssignmentExecutor() { Stop(); }

void AssignmentExecutor::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void AssignmentExecutor::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    pending_.clear();
    if (current_) current_->cancel.Cancel();
  }
  if (thread_.joinable()) thread_.join();
}

void AssignmentExecutor::Enqueue(const v1::Assignment& a) {
  LOG(INFO) << "worker " << options_.name << ": assignment " << a.job_id() << " attempt " << a.attempt() << " as "
            << v1::Role_Name(a.role()) << " rank " << a.rank() << "/" << a.world_size();
  absl::MutexLock lock(&mu_);
  pending_.push_back(a);
}

void AssignmentExecutor::Cancel(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  for (auto it = pending_.begin(); it != pending_.end();) {
    it = it->job_id() == job_id ? pending_.erase(it) : it + 1;
  }
  if (current_ && current_->assignment.job_id() == job_id) {
    LOG(INFO) << "worker " << options_.name << ": cancelling " << job_id;
    current_->cancel.Cancel();
  }
}

void AssignmentExecutor::CancelAll() {
  absl::MutexLock lock(&mu_);
  pending_.clear();
  if (current_) current_->cancel.Cancel();
}

bool AssignmentExecutor::AwaitIdle(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return current_ == nullptr && pending_.empty(); };
  auto done = [this, &idle]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || idle(); };
  clock_->AwaitWithDeadline(mu_, absl::Condition(&done), deadline);
  return idle();
}

std::vector<JobIdentity> AssignmentExecutor::Held() const {
  absl::MutexLock lock(&mu_);
  std::vector<JobIdentity> held;
  if (current_) held.push_back(IdentityOf(current_->assignment));
  for (const v1::Assignment& a : pending_) held.push_back(IdentityOf(a));
  return held;
}

void AssignmentExecutor::Loop() {
  while (true) {
    std::shared_ptr<Task> task;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || !pending_.empty(); };
      mu_.Await(absl::Condition(&ready));
      if (stopping_) return;
      task = std::make_shared<Task>();
      task->assignment = std::move(pending_.front());
      pending_.pop_front();
      current_ = task;
    }
    Finish(*task, Run(*task));
    {
      absl::MutexLock lock(&mu_);
      current_ = nullptr;
    }
    ++done_;
  }
}

absl::Status AssignmentExecutor::Run(const Task& task) {
  auto it = runners_.find(task.assignment.role());
  if (it == runners_.end()) {
    return absl::InvalidArgumentError(absl::StrCat("this worker has no ", v1::Role_Name(task.assignment.role()),
                                                   " role (job ", task.assignment.job_id(), ")"));
  }
  return it->second->Run(task.assignment, task.cancel);
}

void AssignmentExecutor::Finish(const Task& task, const absl::Status& status) {
  const v1::Assignment& a = task.assignment;
  if (task.cancel.cancelled()) {  // the coordinator stopped it: nothing to report, but say when this node was free
    LOG(INFO) << "worker " << options_.name << ": " << a.job_id() << " attempt " << a.attempt()
              << " ended after its cancel" << (status.ok() ? std::string() : absl::StrCat(": ", status.ToString()));
    return;
  }
  v1::JobResult result;
  result.set_job_id(a.job_id());
  result.set_attempt(a.attempt());
  if (status.ok()) {
    LOG(INFO) << "worker " << options_.name << ": " << a.job_id() << " done";
    if (a.role() != v1::ROLE_LEARNER || a.rank() != 0) return;
    result.set_succeeded(true);
    report_(result);
    return;
  }
  LOG(WARNING) << "worker " << options_.name << ": " << a.job_id() << " failed: " << status;
  const bool retryable = IsRetryable(status);
  if (retryable) {
    absl::MutexLock lock(&mu_);
    auto cancelled = [&task]() { return task.cancel.cancelled(); };
    // Cancel and Stop fire the signal with mu_ held, so this wait sees them.
    if (clock_->AwaitWithDeadline(mu_, absl::Condition(&cancelled), clock_->Now() + options_.peer_failure_grace)) {
      return;
    }
  }
  result.set_succeeded(false);
  result.set_message(std::string(status.message()));
  result.set_retryable(retryable);
  report_(result);
}

}  // namespace alignd::node
