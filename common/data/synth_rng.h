// The generators' randomness (common/data/synth.h, common/data/synth_math.h): std::mt19937_64's sequence is fixed by
// the standard, and the distributions here are written out, so the same seed gives the same data on every platform.
#ifndef ALIGND_COMMON_DATA_SYNTH_RNG_H_
#define ALIGND_COMMON_DATA_SYNTH_RNG_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

namespace alignd {

class SynthRng {
 public:
  // The same seed gives the same draws everywhere. Not thread-safe.
  explicit SynthRng(uint64_t seed) : gen_(seed) {}

  // Uniform in [0, n), n > 0, by rejection so that every value is equally likely.
  uint64_t Below(uint64_t n) {
    constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
    const uint64_t excess = (kMax % n + 1) % n;  // 2^64 mod n
    uint64_t x;
    do {
      x = gen_();
    } while (x > kMax - excess);
    return x % n;
  }

  // An index drawn with probability proportional to weights[i]; weights are >= 0 with a positive sum.
  template <size_t N>
  size_t Weighted(const std::array<int, N>& weights) {
    int total = 0;
    for (int w : weights) total += w;
    int r = static_cast<int>(Below(static_cast<uint64_t>(total)));
    for (size_t i = 0; i < N; ++i) {
      if (r < weights[i]) return i;
      r -= weights[i];
    }
    return N - 1;
  }

  // A uniformly chosen element of `items`, which must not be empty; the reference is into `items`.
  template <typename T>
  const T& Pick(const std::vector<T>& items) {
    return items[Below(items.size())];
  }

 private:
  std::mt19937_64 gen_;
};

}  // namespace alignd

#endif  // ALIGND_COMMON_DATA_SYNTH_RNG_H_
