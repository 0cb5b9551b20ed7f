# lbkit_warnings(target): -Wall -Wextra (and -Werror with LBKIT_WERROR) for
# lbkit's own code; generated protobuf code does not get them.
function(lbkit_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra)
  if(CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    # clang (the fuzz build) flags the padding members that keep hot atomics
    # on cache lines of their own (round_robin.h, subchannel.h): unused on
    # purpose.
    target_compile_options(${target} PRIVATE -Wno-unused-private-field)
  endif()
  if(LBKIT_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()
