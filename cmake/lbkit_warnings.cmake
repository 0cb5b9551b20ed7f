# lbkit_warnings(target): -Wall -Wextra (and -Werror with LBKIT_WERROR) for
# lbkit's own code; generated protobuf code does not get them.
function(lbkit_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra)
  if(LBKIT_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()
