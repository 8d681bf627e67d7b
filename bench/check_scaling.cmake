# Runs `bench_scaling --quick` and checks its JSON: every series ran, and
# every time and counter is a finite positive number.
#   cmake -DBENCH=path/to/bench_scaling -P bench/check_scaling.cmake
cmake_minimum_required(VERSION 3.19)  # string(JSON)

execute_process(COMMAND ${BENCH} --quick --benchmark_format=json
                OUTPUT_VARIABLE json ERROR_VARIABLE summary RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "bench_scaling --quick exited with ${rc}:\n${summary}")
endif()
message("${summary}")

# a nan or inf counter is written as a bare word: the JSON does not parse
string(JSON count ERROR_VARIABLE err LENGTH "${json}" benchmarks)
if(err OR count EQUAL 0)
  message(FATAL_ERROR "no benchmarks in the output (${err}; a nan or inf?):\n${json}")
endif()

# Google Benchmark's own keys that are not measurements
set(bookkeeping name family_index per_family_instance_index run_name run_type
    repetitions repetition_index threads iterations time_unit error_occurred error_message)
set(families "")
math(EXPR last "${count} - 1")
foreach(i RANGE ${last})
  string(JSON name GET "${json}" benchmarks ${i} name)
  string(JSON error ERROR_VARIABLE none GET "${json}" benchmarks ${i} error_message)
  if(NOT none)
    message(FATAL_ERROR "${name}: ${error}")
  endif()
  string(REGEX REPLACE "/(L|n):.*" "" family "${name}")
  list(APPEND families ${family})
  string(JSON members LENGTH "${json}" benchmarks ${i})
  math(EXPR members_last "${members} - 1")
  set(required real_time cpu_time tok_s peak_MiB state_MiB)
  foreach(m RANGE ${members_last})
    string(JSON key MEMBER "${json}" benchmarks ${i} ${m})
    if(key IN_LIST bookkeeping)
      continue()
    endif()
    string(JSON type TYPE "${json}" benchmarks ${i} ${key})
    string(JSON value GET "${json}" benchmarks ${i} ${key})
    # a number, not nan or inf, greater than zero
    if(NOT type STREQUAL "NUMBER" OR NOT value MATCHES "^[0-9.eE+-]+$" OR NOT value GREATER 0)
      message(FATAL_ERROR "${name}: ${key} = ${value} (${type}), expected a finite positive number")
    endif()
    list(REMOVE_ITEM required ${key})
  endforeach()
  if(required)
    message(FATAL_ERROR "${name}: no ${required}")
  endif()
endforeach()

list(REMOVE_DUPLICATES families)
foreach(f forward_op/scan forward_op/scan_streamed forward_op/attention forward_op/attention_naive
          forward_layer/mamba forward_layer/attention decode_op/scan decode_op/attention
          decode_layer/mamba decode_layer/attention)
  if(NOT f IN_LIST families)
    message(FATAL_ERROR "series ${f} is missing (got: ${families})")
  endif()
endforeach()
if(NOT summary MATCHES "p = [0-9]" OR NOT summary MATCHES "cheaper")
  message(FATAL_ERROR "the summary (exponents, crossovers) is missing")
endif()
message(STATUS "bench_scaling --quick: ${count} benchmarks, all finite and positive")
