// The numbered examples take no options: --help (or -h) prints what one
// shows, and any other argument is an error rather than silently ignored.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <cstring>

inline void no_options(int argc, char** argv, const char* about) {
  if (argc < 2) return;
  if (std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0) {
    std::printf("usage: %s (no options)\n%s", argv[0], about);
    std::exit(0);
  }
  std::fprintf(stderr, "%s: takes no options, got '%s' (see --help)\n", argv[0], argv[1]);
  std::exit(1);
}
