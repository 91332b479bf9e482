// The order in which the trainer visits its training items, and each data-parallel rank's part of a batch.
#ifndef ALIGND_LEARNER_SAMPLER_H_
#define ALIGND_LEARNER_SAMPLER_H_

#include <cstddef>
#include <cstdint>
#include <vector>

namespace alignd::learner {

// Epoch-shuffled indices over n items: the order of epoch e is a Fisher-Yates shuffle seeded by (seed, e), written
// out here rather than with std::shuffle so that it is the same with every standard library. Its whole state is
// (epoch, position), which a checkpoint saves and Restore takes back. Not thread-safe.
class Sampler {
 public:
  // `n` >= 1 items (Next never returns with n = 0).
  Sampler(size_t n, uint64_t seed);

  // The next `count` indices in [0, n); an epoch's end rolls over into the next epoch's order mid-batch.
  std::vector<size_t> Next(size_t count);

  // The epoch the last index came from (0-based), and how many of its indices have been handed out.
  int64_t epoch() const { return epoch_; }
  size_t position() const { return position_; }

  // Continues as a sampler that had reached (epoch, position) would: the next Next() returns what that one's would.
  void Restore(int64_t epoch, size_t position);

 private:
  void Shuffle();

  size_t n_;
  uint64_t seed_;
  int64_t epoch_ = 0;
  size_t position_ = 0;
  std::vector<size_t> order_;
};

// Rank `rank`'s contiguous part of a global batch split over `world` data-parallel ranks: items [rank * per,
// (rank + 1) * per) with per = batch.size() / world. The ranks' parts are disjoint and, when world divides
// batch.size() (the trainer checks train.batch_size), cover the batch in order. 0 <= rank < world.
std::vector<size_t> ShardOf(const std::vector<size_t>& batch, int rank, int world);

}  // namespace alignd::learner

#endif  // ALIGND_LEARNER_SAMPLER_H_
