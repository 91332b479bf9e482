// bf16 autocast for a scope: what `model.dtype: bfloat16` means (learner/trainer.cc) and what the GPU check measures
// (bench/gpu_check.cc). Parameters, gradients and optimiser state stay float32; matrix products run in bfloat16 on the
// device type given, and the ops autocast keeps in float32 (and a model's own float32 norms, softmax and logits) stay
// there. Autocast state is per thread, like the ranks that are threads in the tests. The scopes nest; the outermost
// one's end empties autocast's cache of bf16 copies of the weights, as torch.autocast's __exit__ does, and so must
// every optimiser step inside one (Renew).
#ifndef ALIGND_COMMON_MODEL_AUTOCAST_H_
#define ALIGND_COMMON_MODEL_AUTOCAST_H_

#include <ATen/autocast_mode.h>

namespace alignd {

class AutocastScope {
 public:
  // Turns bf16 autocast on for this thread's CUDA (`cuda`) or CPU ops until destroyed, then restores the previous
  // state; with `enabled` false it does nothing. Destroy scopes in reverse order of creation, on the same thread.
  AutocastScope(bool enabled, bool cuda) : enabled_(enabled), device_(cuda ? at::kCUDA : at::kCPU) {
    if (!enabled_) return;
    was_on_ = at::autocast::is_autocast_enabled(device_);
    was_dtype_ = at::autocast::get_autocast_dtype(device_);
    at::autocast::set_autocast_dtype(device_, at::kBFloat16);
    at::autocast::set_autocast_enabled(device_, true);
    at::autocast::increment_nesting();
  }
  ~AutocastScope() {
    if (!enabled_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(device_, was_on_);
    at::autocast::set_autocast_dtype(device_, was_dtype_);
  }
  // Empties the cache of bf16 weight copies; call after the weights changed in place (an optimiser step) inside a
  // scope, since the cached copies are then stale.
  static void Renew() { at::autocast::clear_cache(); }
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool enabled_;
  at::DeviceType device_;
  bool was_on_ = false;
  at::ScalarType was_dtype_ = at::kBFloat16;
};

}  // namespace alignd

#endif  // ALIGND_COMMON_MODEL_AUTOCAST_H_
