# Debian packages (tools/setup installs them): yaml-cpp, nlohmann-json, CLI11, sentencepiece, pcre2,
# utf8proc, GoogleTest.
# SCORCH_DEPS_PREFIX (tools/gpu/check.sh) points at packages unpacked without root.
if(SCORCH_DEPS_PREFIX)
  list(PREPEND CMAKE_PREFIX_PATH "${SCORCH_DEPS_PREFIX}/usr" "${SCORCH_DEPS_PREFIX}/usr/lib/x86_64-linux-gnu/cmake")
  include_directories(SYSTEM "${SCORCH_DEPS_PREFIX}/usr/include")
  link_directories("${SCORCH_DEPS_PREFIX}/usr/lib/x86_64-linux-gnu")
endif()
find_package(yaml-cpp REQUIRED)
find_package(nlohmann_json REQUIRED)
find_package(CLI11 REQUIRED)
find_library(SENTENCEPIECE_LIB sentencepiece HINTS ${SCORCH_DEPS_PREFIX}/usr/lib/x86_64-linux-gnu REQUIRED)
find_path(SENTENCEPIECE_INCLUDE sentencepiece_processor.h HINTS ${SCORCH_DEPS_PREFIX}/usr/include REQUIRED)
find_library(PCRE2_LIB pcre2-8 HINTS ${SCORCH_DEPS_PREFIX}/usr/lib/x86_64-linux-gnu REQUIRED)
find_path(PCRE2_INCLUDE pcre2.h HINTS ${SCORCH_DEPS_PREFIX}/usr/include REQUIRED)
find_library(UTF8PROC_LIB utf8proc HINTS ${SCORCH_DEPS_PREFIX}/usr/lib/x86_64-linux-gnu REQUIRED)
find_path(UTF8PROC_INCLUDE utf8proc.h HINTS ${SCORCH_DEPS_PREFIX}/usr/include REQUIRED)
find_package(Threads REQUIRED)

add_library(scorch_deps INTERFACE)
if(TARGET yaml-cpp::yaml-cpp)
  target_link_libraries(scorch_deps INTERFACE yaml-cpp::yaml-cpp)
else()
  target_link_libraries(scorch_deps INTERFACE yaml-cpp)
endif()
target_link_libraries(scorch_deps INTERFACE nlohmann_json::nlohmann_json ${SENTENCEPIECE_LIB} ${PCRE2_LIB} ${UTF8PROC_LIB}
                      Threads::Threads)
target_include_directories(scorch_deps INTERFACE ${SENTENCEPIECE_INCLUDE} ${PCRE2_INCLUDE} ${UTF8PROC_INCLUDE})
