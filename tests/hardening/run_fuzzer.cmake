# Runs one libFuzzer target for SECONDS seconds: new inputs go to a fresh corpus under
# WORK, the seeds (SEEDS) are only read, and a crashing input is saved under WORK.
# Usage: cmake -DFUZZER=... -DSEEDS=... -DDICT=... -DWORK=... -DSECONDS=... -P run_fuzzer.cmake

if(NOT EXISTS ${FUZZER})
  message("hardening: skipped: ${FUZZER} was not built (clang++ cannot link -fsanitize=fuzzer)")
  return()
endif()
file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK}/corpus ${WORK}/artifacts)
set(dict)
if(EXISTS ${DICT})
  set(dict -dict=${DICT})
endif()
execute_process(
  COMMAND ${FUZZER} ${WORK}/corpus ${SEEDS} ${dict} -max_total_time=${SECONDS} -rss_limit_mb=2048 -timeout=10
    -max_len=8192 -print_final_stats=1 -artifact_prefix=${WORK}/artifacts/
  WORKING_DIRECTORY ${WORK}
  RESULT_VARIABLE rc
  OUTPUT_VARIABLE out
  ERROR_VARIABLE out)
file(WRITE ${WORK}/log.txt "${out}")
string(REGEX MATCH "Done [0-9]+ runs in [0-9]+ second\\(s\\)" done "${out}")
string(REGEX MATCH "stat::number_of_executed_units: [0-9]+" units "${out}")
file(GLOB corpus ${WORK}/corpus/*)
list(LENGTH corpus found)
if(NOT rc EQUAL 0)
  string(LENGTH "${out}" length)
  if(length GREATER 20000)
    math(EXPR from "${length} - 20000")
    string(SUBSTRING "${out}" ${from} -1 out)
  endif()
  message("${out}")
  message(FATAL_ERROR "${FUZZER} failed (exit code ${rc}); inputs that crash are in ${WORK}/artifacts, the log in ${WORK}/log.txt")
endif()
message("${done}; ${units}; ${found} new corpus inputs; log in ${WORK}/log.txt")
