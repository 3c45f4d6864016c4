#include "fresh_memory.hpp"

#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace tensorzip {

void advise_huge_pages(void* data, std::size_t length) noexcept {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr std::uintptr_t kHuge = std::uintptr_t{2} << 20;
  const auto begin = reinterpret_cast<std::uintptr_t>(data);
  const std::uintptr_t first = (begin + kHuge - 1) & ~(kHuge - 1);
  const std::uintptr_t last = (begin + length) & ~(kHuge - 1);
  if (last > first) {
    // The result is ignored on purpose: advice refused (THP off, not anonymous memory) changes nothing.
    (void)madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
  }
#else
  (void)data;
  (void)length;
#endif
}

}  // namespace tensorzip
