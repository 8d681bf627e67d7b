// Large work buffers in 2 MiB pages where the OS offers them (Linux's
// transparent huge pages): the SSD kernel walks its rows at long L a new
// 4 KiB page per step and head. With the rows and y in 2 MiB pages
// `ssd_recurrent` ran 1.65x faster at L = 2048, N = 64 (1.3x-1.44x at
// N = 128) on one kind of Xeon host, no faster on another, and a median
// 1.05x on Zen 5 (bench/RESULTS.md, "The rows in 2 MiB pages").
#pragma once

#include <cstddef>
#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace ssm::detail {

// Asks for the whole 2 MiB pages inside [p, p + bytes) to be backed by
// huge pages from their first touch on (advice only: nothing changes for
// pages already touched, and the contents stay as they are). True when the
// OS took the advice for at least one page; false when the range holds no
// whole 2 MiB page or the OS has no such advice.
inline bool advise_huge_pages([[maybe_unused]] void* p, [[maybe_unused]] std::size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr std::uintptr_t huge = std::uintptr_t(2) << 20;
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  if (p == nullptr || bytes < huge || a > UINTPTR_MAX - bytes) return false;
  const std::uintptr_t first = (a + huge - 1) & ~(huge - 1), last = (a + bytes) & ~(huge - 1);
  return last > first && madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE) == 0;
#else
  return false;
#endif
}

}  // namespace ssm::detail
