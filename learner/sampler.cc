#include "learner/sampler.h"

#include <random>
#include <utility>

namespace alignd::learner {

Sampler::Sampler(size_t n, uint64_t seed) : n_(n), seed_(seed) {}

std::vector<size_t> Sampler::Next(size_t count) {
  std::vector<size_t> out;
  while (out.size() < count) {
    if (order_.empty() || position_ >= n_) {
      if (!order_.empty()) {
        ++epoch_;
        position_ = 0;
      }
      Shuffle();
    }
    out.push_back(order_[position_++]);
  }
  return out;
}

void Sampler::Restore(int64_t epoch, size_t position) {
  epoch_ = epoch;
  position_ = position;
  Shuffle();
}

void Sampler::Shuffle() {
  order_.resize(n_);
  for (size_t i = 0; i < n_; ++i) order_[i] = i;
  std::mt19937_64 rng(seed_ * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(epoch_));
  for (size_t i = n_; i > 1; --i) std::swap(order_[i - 1], order_[rng() % i]);
}

std::vector<size_t> ShardOf(const std::vector<size_t>& batch, int rank, int world) {
  const size_t per = batch.size() / static_cast<size_t>(world);
  const size_t begin = per * static_cast<size_t>(rank);
  return std::vector<size_t>(batch.begin() + static_cast<std::ptrdiff_t>(begin),
                             batch.begin() + static_cast<std::ptrdiff_t>(begin + per));
}

}  // namespace alignd::learner
