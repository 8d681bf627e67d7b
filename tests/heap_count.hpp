// Heap allocations of this test program, counted by its own operator new.
// Defines every replaceable global operator new and delete but the aligned
// ones (which the program's allocations of over-aligned types keep): each
// form of new and its delete must come from the same place, or a sanitizer
// that supplies its own reports the mismatch. Include it in one
// translation unit of a program (each test program is one).
#pragma once

#include <atomic>
#include <cstdlib>
#include <new>

namespace test {
inline std::atomic<long> heap_allocations{0};

inline void* counted_malloc(std::size_t n) noexcept {
  ++heap_allocations;
  return std::malloc(n ? n : 1);
}
}  // namespace test

// (GCC warns that free() meets memory from operator new once both are
// inlined: here that is the point.)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
void* operator new(std::size_t n) {
  if (void* p = test::counted_malloc(n)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return operator new(n); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return test::counted_malloc(n); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return test::counted_malloc(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
