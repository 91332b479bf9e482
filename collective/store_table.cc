#include "collective/store_table.h"

#include <algorithm>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace alignd::collective {
namespace {

std::string FullKey(const std::string& group, const std::string& key) {
  std::string full = group;
  full.push_back('\0');
  full += key;
  return full;
}

}  // namespace

absl::Status StoreTable::AwaitKeys(const std::string& group, const alignd::v1::StoreRequest& request,
                                   absl::Time deadline) {
  std::vector<std::string> keys;
  for (const std::string& k : request.keys()) keys.push_back(FullKey(group, k));
  auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return closed_ || std::all_of(keys.begin(), keys.end(), [&](const std::string& k) { return values_.count(k); });
  };
  if (request.timeout_ms() > 0) deadline = std::min(deadline, absl::Now() + absl::Milliseconds(request.timeout_ms()));
  if (!mu_.AwaitWithDeadline(absl::Condition(&ready), deadline)) {
    return absl::DeadlineExceededError(
        absl::StrCat("rendezvous: waited for ", keys.size(), " key(s) of group \"", group, "\" until the deadline"));
  }
  if (closed_) return absl::UnavailableError("rendezvous: the store closed (its job ended)");
  return absl::OkStatus();
}

absl::Status StoreTable::Apply(const alignd::v1::StoreRequest& request, alignd::v1::StoreResponse* response,
                               absl::Time deadline) {
  using alignd::v1::StoreOp;
  const StoreOp op = request.op();
  if (request.keys_size() > kMaxKeysPerRequest) {
    return absl::InvalidArgumentError(
        absl::StrCat("rendezvous: ", request.keys_size(), " keys in one request (limit ", kMaxKeysPerRequest, ")"));
  }
  for (const std::string& k : request.keys()) {
    if (k.size() > kMaxKeyBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("rendezvous: a key of ", k.size(), " bytes (limit ", kMaxKeyBytes, ")"));
    }
  }
  if (request.value().size() > kMaxValueBytes || request.expected().size() > kMaxValueBytes) {
    return absl::InvalidArgumentError(absl::StrCat("rendezvous: a value over ", kMaxValueBytes, " bytes"));
  }
  const bool one_key = op == StoreOp::STORE_OP_SET || op == StoreOp::STORE_OP_GET || op == StoreOp::STORE_OP_ADD ||
                       op == StoreOp::STORE_OP_COMPARE_SET || op == StoreOp::STORE_OP_DELETE;
  if (one_key && request.keys_size() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("rendezvous: ", alignd::v1::StoreOp_Name(op), " takes one key, got ", request.keys_size()));
  }
  const std::string& group = request.group();
  absl::MutexLock lock(&mu_);
  if (closed_) return absl::UnavailableError("rendezvous: the store closed (its job ended)");
  // Stores `value` under `key`, within the table's byte budget.
  auto put = [&](const std::string& key, std::string value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
    auto it = values_.find(key);
    const size_t old = it == values_.end() ? 0 : key.size() + it->second.size();
    const size_t now = key.size() + value.size();
    if (bytes_ - old + now > kMaxTotalBytes) {
      return absl::ResourceExhaustedError(
          absl::StrCat("rendezvous: the store would exceed ", kMaxTotalBytes, " bytes"));
    }
    bytes_ = bytes_ - old + now;
    values_[key] = std::move(value);
    return absl::OkStatus();
  };
  switch (op) {
    case StoreOp::STORE_OP_SET:
      return put(FullKey(group, request.keys(0)), request.value());
    case StoreOp::STORE_OP_GET: {
      if (absl::Status s = AwaitKeys(group, request, deadline); !s.ok()) return s;
      response->set_value(values_.at(FullKey(group, request.keys(0))));
      return absl::OkStatus();
    }
    case StoreOp::STORE_OP_ADD: {
      const std::string key = FullKey(group, request.keys(0));
      int64_t number = 0;
      auto it = values_.find(key);
      if (it != values_.end() && !absl::SimpleAtoi(it->second, &number)) {
        return absl::InvalidArgumentError(
            absl::StrCat("rendezvous: ADD to key \"", request.keys(0), "\", whose value is not a number"));
      }
      number += request.delta();
      if (absl::Status s = put(key, absl::StrCat(number)); !s.ok()) return s;
      response->set_number(number);
      return absl::OkStatus();
    }
    case StoreOp::STORE_OP_COMPARE_SET: {
      const std::string key = FullKey(group, request.keys(0));
      auto it = values_.find(key);
      if (it == values_.end()) {
        if (request.expected().empty()) {
          if (absl::Status s = put(key, request.value()); !s.ok()) return s;
          response->set_value(request.value());
        } else {
          response->set_value(request.expected());  // c10d: an absent key answers `expected`
        }
      } else if (it->second == request.expected()) {
        if (absl::Status s = put(key, request.value()); !s.ok()) return s;
        response->set_value(request.value());
      } else {
        response->set_value(it->second);
      }
      return absl::OkStatus();
    }
    case StoreOp::STORE_OP_CHECK:
      response->set_flag(std::all_of(request.keys().begin(), request.keys().end(),
                                     [&](const std::string& k) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
                                       return values_.count(FullKey(group, k)) > 0;
                                     }));
      return absl::OkStatus();
    case StoreOp::STORE_OP_WAIT:
      return AwaitKeys(group, request, deadline);
    case StoreOp::STORE_OP_DELETE: {
      auto it = values_.find(FullKey(group, request.keys(0)));
      response->set_flag(it != values_.end());
      if (it != values_.end()) {
        bytes_ -= it->first.size() + it->second.size();
        values_.erase(it);
      }
      return absl::OkStatus();
    }
    case StoreOp::STORE_OP_NUM_KEYS: {
      const std::string prefix = FullKey(group, "");
      int64_t n = 0;
      for (auto it = values_.lower_bound(prefix);
           it != values_.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it) {
        ++n;
      }
      response->set_number(n);
      return absl::OkStatus();
    }
    default:
      return absl::InvalidArgumentError(absl::StrCat("rendezvous: unknown op ", static_cast<int>(op)));
  }
}

void StoreTable::Close() {
  absl::MutexLock lock(&mu_);
  closed_ = true;
}

}  // namespace alignd::collective
