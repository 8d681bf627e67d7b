// Work matrices in 2 MiB pages where the OS offers them (Linux's transparent
// huge pages). The models' scans walk their rows at long L a new 4 KiB page
// per step: the SSD kernel a head's rows of x, dt and y, the selective scan
// a channel block's rows of u, delta, z, B, C and y. With those rows in 2
// MiB pages, on a Xeon host with 105 MiB of L3, `ssd_recurrent` ran 2.0x
// faster at L = 2048, N = 64 and `selective_scan` up to 1.9x
// (bench/LOG.md, "The rows in whole 2 MiB pages"). Advising a malloc'd
// buffer is not enough, because malloc hands back heap memory already touched
// in 4 KiB pages. So a large buffer here is allocated 2 MiB-aligned and whole,
// and advised before anything touches it.
#pragma once

#include <Eigen/Core>

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <memory>
#include <new>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace ssm::detail {

constexpr std::size_t huge_page_bytes = std::size_t(2) << 20;

// Uninitialized storage for `bytes` bytes (> 0): whole 2 MiB pages, advised
// into huge pages, from 2 MiB on; a cache line's alignment below.
inline void* allocate_pages(std::size_t bytes) {
  const std::size_t align = bytes >= huge_page_bytes ? huge_page_bytes : 64;
  if (bytes > std::size_t(-1) - align) throw std::bad_alloc();
  const std::size_t whole = (bytes + align - 1) / align * align;  // aligned_alloc wants a multiple
  void* p = std::aligned_alloc(align, whole);
  if (p == nullptr) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (align == huge_page_bytes) madvise(p, whole, MADV_HUGEPAGE);  // advice: failure is harmless
#endif
  return p;
}

// allocate_pages as a standard allocator (for std::vector).
template <class T>
struct PageAllocator {
  using value_type = T;
  PageAllocator() = default;
  template <class U>
  PageAllocator(const PageAllocator<U>&) {}
  T* allocate(std::size_t n) {
    if (n > std::size_t(-1) / sizeof(T)) throw std::bad_alloc();
    return static_cast<T*>(allocate_pages(std::max<std::size_t>(n, 1) * sizeof(T)));
  }
  void deallocate(T* p, std::size_t) { std::free(p); }
  bool operator==(const PageAllocator&) const { return true; }
  bool operator!=(const PageAllocator&) const { return false; }
};

// A row-major float matrix for scratch: resize() keeps nothing and leaves
// the values unset; storage from PageAllocator. The interface the
// workspaces use of Eigen's (rows, cols, data, resize).
class PagedRows {
 public:
  PagedRows() = default;
  PagedRows(const PagedRows& o) { *this = o; }
  PagedRows(PagedRows&&) noexcept = default;
  PagedRows& operator=(PagedRows&&) noexcept = default;
  PagedRows& operator=(const PagedRows& o) {
    if (this != &o) {
      resize(o.rows_, o.cols_);
      std::copy_n(o.data(), std::size_t(o.size()), data());
    }
    return *this;
  }

  Eigen::Index rows() const { return rows_; }
  Eigen::Index cols() const { return cols_; }
  Eigen::Index size() const { return rows_ * cols_; }
  float* data() { return p_.get(); }
  const float* data() const { return p_.get(); }

  void resize(Eigen::Index rows, Eigen::Index cols) {
    const auto n = std::size_t(rows) * std::size_t(cols);
    if (cols != 0 && n / std::size_t(cols) != std::size_t(rows)) throw std::bad_alloc();
    if (n != std::size_t(size())) p_.reset(n == 0 ? nullptr : PageAllocator<float>().allocate(n));
    rows_ = rows, cols_ = cols;
  }

 private:
  struct Free {
    void operator()(float* p) const { PageAllocator<float>().deallocate(p, 0); }
  };
  std::unique_ptr<float, Free> p_;
  Eigen::Index rows_ = 0, cols_ = 0;
};

}  // namespace ssm::detail
