# How libmla.so gets its C++ runtime (libstdc++).
#
# A libmla.so built by a compiler whose libstdc++ is not the one the system's loader finds
# (e.g. a GCC under /opt) can be loaded into a process that already holds another libstdc++ —
# a PyTorch process always does — and then runs its C++ code against a runtime it was not
# compiled for. On the GPU machine that crashed at the first iostream use unless the system
# libstdc++ was preloaded. Linking that compiler's libstdc++ into libmla.so, with its symbols
# hidden (-static-libstdc++, --exclude-libs), makes libmla carry the runtime it was built
# against and leaves the process's own libstdc++ alone.
#
# MLA_STATIC_LIBSTDCXX: AUTO (default: ON exactly when the compiler's libstdc++.so.6 is not the
# file the system loader resolves), ON, or OFF. The C ABI is unaffected; C++ users of the
# shared library then share std:: types with it by layout (one ABI), not by one runtime copy.
set(MLA_STATIC_LIBSTDCXX "AUTO" CACHE STRING "Link libstdc++ into libmla.so (hidden): AUTO, ON or OFF")

function(mla_resolve_static_libstdcxx out)
  set(choice ${MLA_STATIC_LIBSTDCXX})
  if(choice STREQUAL "AUTO")
    set(choice OFF)
    if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
      execute_process(COMMAND ${CMAKE_CXX_COMPILER} -print-file-name=libstdc++.so.6
                      OUTPUT_VARIABLE compiler_lib OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
      find_program(MLA_LDCONFIG ldconfig PATHS /sbin /usr/sbin)
      set(system_lib "")
      if(MLA_LDCONFIG)
        execute_process(COMMAND ${MLA_LDCONFIG} -p OUTPUT_VARIABLE cache ERROR_QUIET)
        string(REGEX MATCH "libstdc\\+\\+\\.so\\.6 \\([^)]*x86-64[^)]*\\) => ([^\n]+)" _ "${cache}")
        set(system_lib ${CMAKE_MATCH_1})
        if(NOT system_lib)
          string(REGEX MATCH "libstdc\\+\\+\\.so\\.6 \\([^)]*\\) => ([^\n]+)" _ "${cache}")
          set(system_lib ${CMAKE_MATCH_1})
        endif()
      endif()
      # A compiler without a shared libstdc++ (-print-file-name answers a bare name) links its
      # static one anyway, with every symbol exported unless hidden: the case seen on the GPU
      # machine's /opt/gcc, where libmla.so then crashed inside PyTorch. Treat it as "differs".
      set(differs TRUE)
      set(compiler_real "${compiler_lib} (no shared libstdc++)")
      set(system_real "")
      if(IS_ABSOLUTE "${compiler_lib}" AND EXISTS "${compiler_lib}")
        file(REAL_PATH "${compiler_lib}" compiler_real)
        if(system_lib AND EXISTS "${system_lib}")
          file(REAL_PATH "${system_lib}" system_real)
        endif()
        if(compiler_real STREQUAL system_real)
          set(differs FALSE)
        endif()
      endif()
      if(differs)
        # Only if that compiler's libstdc++.a can go into a shared object (it must be PIC).
        set(probe ${CMAKE_BINARY_DIR}/CMakeFiles/mla_static_libstdcxx_probe)
        file(WRITE ${probe}.cpp "#include <sstream>\nextern \"C\" int mla_probe(long v) { std::ostringstream o; o << v; return (int)o.str().size(); }\n")
        execute_process(COMMAND ${CMAKE_CXX_COMPILER} -shared -fPIC -static-libstdc++ -Wl,--exclude-libs,libstdc++.a
                                ${probe}.cpp -o ${probe}.so
                        RESULT_VARIABLE probe_rc OUTPUT_QUIET ERROR_VARIABLE probe_err)
        if(probe_rc EQUAL 0)
          set(choice ON)
        else()
          message(WARNING "mla: ${CMAKE_CXX_COMPILER}'s libstdc++ is not the system's, but its libstdc++.a cannot "
                          "be linked into a shared object, so libmla.so links it dynamically; inside a process "
                          "that loaded another libstdc++ (PyTorch) it may fail (docs/python.md). ${probe_err}")
        endif()
      endif()
      if(choice)
        message(STATUS "mla: ${CMAKE_CXX_COMPILER}'s libstdc++ (${compiler_real}) is not the system's "
                       "(${system_real}): linking it into libmla.so (MLA_STATIC_LIBSTDCXX=AUTO)")
      endif()
    endif()
  endif()
  set(MLA_STATIC_LIBSTDCXX_RESOLVED ${choice} CACHE INTERNAL "what MLA_STATIC_LIBSTDCXX resolved to")
  set(${out} ${choice} PARENT_SCOPE)
endfunction()

function(mla_link_cxx_runtime target)
  mla_resolve_static_libstdcxx(static)
  if(static)
    target_link_options(${target} PRIVATE -static-libstdc++)
  endif()
  # Always: whatever puts a static libstdc++ into libmla.so (this option, or a toolchain that
  # links it statically by default), its symbols stay inside; with a shared libstdc++ this
  # changes nothing.
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" OR CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    target_link_options(${target} PRIVATE LINKER:--exclude-libs,libstdc++.a:libsupc++.a)
  endif()
endfunction()
