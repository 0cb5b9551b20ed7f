# ctest driver for lbkit-bench (tools/CMakeLists.txt).
#   -DBENCH=<lbkit-bench> -DJSON=<file>  a tiny run; its JSON must hold every
#                                        workload and every channel
#   -DBENCH=<lbkit-bench> -DMODE=flags   bad flags fail with status 2 and a message
#   -DBENCH=<lbkit-bench> -DJSON=<file> -DMODE=scenarios
#                                        tiny runs of the other scenarios; their
#                                        JSON must hold every experiment and row
#   -DBENCH=<lbkit-bench> -DJSON=<file> -DMODE=cold-start
#                                        a tiny cold-start run; its JSON must hold
#                                        every measurement and channel
cmake_minimum_required(VERSION 3.19)  # string(JSON)

if(MODE STREQUAL "flags")
  foreach(bad "--duration;soon" "--duration;0" "--threads;0" "--workloads;sync,nope"
              "--channels;native" "--backends;1" "--rounds" "--bogus" "--scenario"
              "--scenario;nope" "--scenario=slow-backend" "--scenario;slow-backend;--rate;0"
              "--scenario;slow-backend;--experiments;slow,fast" "--scenario;slow-backend;--delay"
              "--scenario;ring-hash-movement;--endpoints;1"
              "--scenario;ring-hash-movement;--keys;many"
              "--scenario;discovery;--endpoints;1" "--scenario;discovery;--churn;101"
              "--scenario;cold-start;--trials;0" "--scenario;cold-start;--parts;warm"
              "--scenario;cold-start;--ready-endpoints;2,x")
    execute_process(COMMAND ${BENCH} ${bad} RESULT_VARIABLE rc OUTPUT_VARIABLE out
                    ERROR_VARIABLE err TIMEOUT 30)
    if(NOT rc EQUAL 2 OR NOT err MATCHES "^lbkit-bench( --scenario [a-z-]+)?: .*--help")
      message(FATAL_ERROR "lbkit-bench ${bad}: expected status 2 and a usage error, got ${rc}:\n${err}")
    endif()
    message(STATUS "lbkit-bench ${bad} -> ${err}")
  endforeach()
  execute_process(COMMAND ${BENCH} --help RESULT_VARIABLE rc OUTPUT_VARIABLE out TIMEOUT 30)
  if(NOT rc EQUAL 0 OR NOT out MATCHES "Usage: lbkit-bench" OR NOT out MATCHES "--workloads")
    message(FATAL_ERROR "lbkit-bench --help: status ${rc}:\n${out}")
  endif()
  foreach(scenario slow-backend ring-hash-movement discovery cold-start)
    execute_process(COMMAND ${BENCH} --scenario ${scenario} --help RESULT_VARIABLE rc
                    OUTPUT_VARIABLE out TIMEOUT 30)
    if(NOT rc EQUAL 0 OR NOT out MATCHES "Usage: lbkit-bench --scenario ${scenario}")
      message(FATAL_ERROR "lbkit-bench --scenario ${scenario} --help: status ${rc}:\n${out}")
    endif()
  endforeach()
  return()
endif()

if(MODE STREQUAL "cold-start")
  # Tiny sizes: backends in child processes, every part, every channel.
  file(REMOVE ${JSON})
  execute_process(
    COMMAND ${BENCH} --scenario cold-start --trials 2 --ready-endpoints 2,5 --ready-trials 1
            --footprint-channels 1,3 --footprint-endpoints 5,10 --no-progress --json ${JSON}
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 60)
  message(STATUS "${out}")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "lbkit-bench --scenario cold-start exited with ${rc}\n${err}")
  endif()
  file(READ ${JSON} json)
  function(require)
    string(JSON value ERROR_VARIABLE error GET "${json}" ${ARGN})
    if(error)
      message(FATAL_ERROR "${JSON}: no ${ARGN}: ${error}")
    endif()
  endfunction()
  set(all lbkit_round_robin native_round_robin native_round_robin_2)
  set(counted lbkit_round_robin native_round_robin)  # the footprint has no A/A control
  foreach(channel ${all})
    require(channels ${channel} description)
    foreach(field median_ms p90_ms min_ms max_ms median_ratio p90_ratio trials_ms)
      require(time_to_first_call channels ${channel} ${field})
    endforeach()
    string(JSON n LENGTH "${json}" time_to_first_call channels ${channel} trials_ms)
    if(NOT n EQUAL 2)
      message(FATAL_ERROR "${JSON}: ${channel}: ${n} first-call trials, expected 2")
    endif()
    foreach(row 0 1)
      foreach(field median_ms min_ms max_ms median_ratio first_serving_median_ms cpu_median_ms
                    trials)
        require(time_to_all_ready ${row} channels ${channel} ${field})
      endforeach()
      require(time_to_all_ready ${row} channels ${channel} trials 0 all_ms)
    endforeach()
  endforeach()
  string(JSON n LENGTH "${json}" time_to_all_ready)
  string(JSON last GET "${json}" time_to_all_ready 1 endpoints)
  if(NOT n EQUAL 2 OR NOT last EQUAL 5)
    message(FATAL_ERROR "${JSON}: ${n} all-ready rows, the last for ${last} endpoints")
  endif()
  foreach(channel ${counted})
    foreach(field threads_added heap_added_bytes threads_added_by_name)
      require(footprint process_wide_first_channel ${channel} ${field})
    endforeach()
    foreach(row 0 1)
      foreach(field threads_added heap_added_bytes threads_per_channel heap_per_channel_bytes)
        require(footprint per_channel ${row} channels ${channel} ${field})
      endforeach()
      foreach(field threads_added heap_added_bytes threads_per_endpoint heap_per_endpoint_bytes)
        require(footprint per_endpoint ${row} channels ${channel} ${field})
      endforeach()
    endforeach()
    require(footprint per_channel_slope ${channel} heap_per_channel_bytes)
    require(footprint per_endpoint_slope ${channel} heap_per_endpoint_bytes)
  endforeach()
  message(STATUS "lbkit-bench --scenario cold-start wrote every measurement and channel")
  return()
endif()

if(MODE STREQUAL "scenarios")
  file(REMOVE ${JSON})
  execute_process(
    COMMAND ${BENCH} --scenario slow-backend --rate 200 --duration 200ms --warmup 100ms
            --rounds 1 --no-progress --json ${JSON}
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 150)
  message(STATUS "${out}")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "lbkit-bench --scenario slow-backend exited with ${rc}\n${err}")
  endif()
  file(READ ${JSON} json)
  foreach(experiment 0 1)
    string(JSON n LENGTH "${json}" experiments ${experiment} channels)
    string(JSON name GET "${json}" experiments ${experiment} experiment)
    # Every channel of the experiment, the policies of issue 9 included.
    if(name STREQUAL "slow" AND NOT n EQUAL 5 OR name STREQUAL "failing" AND NOT n EQUAL 3)
      message(FATAL_ERROR "${JSON}: experiment ${name} has ${n} channels\n${err}")
    endif()
    math(EXPR last "${n} - 1")
    foreach(i RANGE ${last})
      foreach(field calls watched_share mean_ms p50_ms p90_ms p99_ms p999_ms share_ratio
                    mean_ratio p90_ratio)
        string(JSON value ERROR_VARIABLE error GET "${json}" experiments ${experiment} channels
               ${i} ${field})
        if(error)
          message(FATAL_ERROR "${JSON}: ${name} channel ${i} has no ${field}: ${error}")
        endif()
      endforeach()
    endforeach()
  endforeach()
  execute_process(
    COMMAND ${BENCH} --scenario ring-hash-movement --endpoints 4,100 --keys 2000 --json ${JSON}
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 60)
  message(STATUS "${out}")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "lbkit-bench --scenario ring-hash-movement exited with ${rc}\n${err}")
  endif()
  file(READ ${JSON} json)
  string(JSON n LENGTH "${json}" results)
  if(NOT n EQUAL 2)
    message(FATAL_ERROR "${JSON}: ${n} results, expected 2")
  endif()
  # A real etcd member, 50 endpoints churning: no failed call (the exit
  # status says so), every write reflected, every figure written.
  execute_process(
    COMMAND ${BENCH} --scenario discovery --endpoints 50 --churn 20 --duration 2s --threads 2
            --json ${JSON}
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 120)
  message(STATUS "${out}")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "lbkit-bench --scenario discovery exited with ${rc}\n${out}\n${err}")
  endif()
  file(READ ${JSON} json)
  foreach(run etcd_churn static_baseline)
    foreach(field calls failed_calls all_ready_seconds process_cpu_seconds_per_second
                  io_and_control_cpu_seconds_per_second)
      string(JSON value ERROR_VARIABLE error GET "${json}" ${run} ${field})
      if(error)
        message(FATAL_ERROR "${JSON}: ${run} has no ${field}: ${error}")
      endif()
    endforeach()
  endforeach()
  string(JSON unreflected GET "${json}" etcd_churn unreflected_writes)
  string(JSON puts GET "${json}" etcd_churn put_to_picker count)
  if(NOT unreflected EQUAL 0 OR puts EQUAL 0)
    message(FATAL_ERROR "${JSON}: ${unreflected} writes not reflected, ${puts} puts measured")
  endif()
  message(STATUS "lbkit-bench scenarios ran and wrote every experiment and row")
  return()
endif()

file(REMOVE ${JSON})
execute_process(
  COMMAND ${BENCH} --duration 50ms --warmup 20ms --rounds 1 --threads 1 --outstanding 4
          --json ${JSON}
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 150)
message(STATUS "${out}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "lbkit-bench exited with ${rc}\n${err}")
endif()
file(READ ${JSON} json)
string(JSON n LENGTH "${json}" results)
math(EXPR last "${n} - 1")
foreach(workload sync async callback bidi)
  set(found FALSE)
  foreach(i RANGE ${last})
    string(JSON name GET "${json}" results ${i} workload)
    if(NOT name STREQUAL workload)
      continue()
    endif()
    set(found TRUE)
    foreach(channel lbkit_round_robin lbkit_custom_round_robin native_round_robin native_single)
      foreach(field calls_per_sec p50_us p99_us cpu_us_per_call throughput_ratio p99_ratio cpu_ratio)
        string(JSON value ERROR_VARIABLE error GET "${json}" results ${i} channels ${channel}
               ${field})
        if(error)
          message(FATAL_ERROR "${JSON}: ${workload}/${channel} has no ${field}: ${error}")
        endif()
      endforeach()
    endforeach()
  endforeach()
  if(NOT found)
    message(FATAL_ERROR "${JSON}: no results for workload ${workload}")
  endif()
endforeach()
message(STATUS "lbkit-bench JSON lists every workload and channel")
