// Heap allocations of this test program, counted by its own operator new
// (the array and nothrow forms call it). Defines the replaceable global
// operator new and delete: include it in one translation unit of a program
// (each test program is one).
#pragma once

#include <atomic>
#include <cstdlib>
#include <new>

namespace test {
inline std::atomic<long> heap_allocations{0};
}  // namespace test

// (GCC warns that free() meets memory from operator new once both are
// inlined: here that is the point.)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
void* operator new(std::size_t n) {
  ++test::heap_allocations;
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
