# llama.cpp's C++ Jinja engine (common/jinja + common/json + common/unicode, MIT license, Copyright
# (c) 2023-2026 The ggml authors; LICENSE beside the sources), built as a static library from the
# cache tools/setup fills from the pinned, checksummed llama-cpp-python sdist on PyPI
# (tools/tokenizer_vocabs.py). The sources are never copied into this repository.
# Without the cache the build still works, and `tokenizer.chat_template: auto` with a template
# is a clear error that says to run tools/setup.
if(DEFINED ENV{SCORCH_VOCAB_DIR})
  set(_scorch_vocab "$ENV{SCORCH_VOCAB_DIR}")
else()
  set(_scorch_vocab "$ENV{HOME}/.cache/scorch/vocab")
endif()
set(SCORCH_JINJA_DIR "${_scorch_vocab}/llama.cpp/common" CACHE PATH "llama.cpp common/ (Jinja engine), fetched by tools/setup")
set(_jinja_sources jinja/lexer.cpp jinja/parser.cpp jinja/runtime.cpp jinja/value.cpp jinja/string.cpp jinja/caps.cpp
    json.cpp unicode.cpp)
set(SCORCH_HAVE_JINJA ON)
foreach(f ${_jinja_sources})
  if(NOT EXISTS "${SCORCH_JINJA_DIR}/${f}")
    set(SCORCH_HAVE_JINJA OFF)
  endif()
endforeach()
if(SCORCH_HAVE_JINJA)
  # tools/tokenizer_vocabs.py bounds the engine's recursion (a fuzz finding: unbounded recursion
  # overflowed the stack); sources without that edit are not used.
  file(READ "${SCORCH_JINJA_DIR}/jinja/runtime.cpp" _jinja_runtime)
  string(FIND "${_jinja_runtime}" "scorch: bounded nesting" _jinja_bounded)
  if(_jinja_bounded EQUAL -1)
    set(SCORCH_HAVE_JINJA OFF)
    set(_jinja_why "has llama.cpp's Jinja engine without scorch's nesting bound")
  endif()
else()
  set(_jinja_why "lacks llama.cpp's Jinja engine")
endif()
if(SCORCH_HAVE_JINJA)
  list(TRANSFORM _jinja_sources PREPEND "${SCORCH_JINJA_DIR}/")
  add_library(scorch_jinja STATIC ${_jinja_sources})
  set_target_properties(scorch_jinja PROPERTIES POSITION_INDEPENDENT_CODE ON CXX_STANDARD 17)
  target_include_directories(scorch_jinja PRIVATE ${CMAKE_SOURCE_DIR}/cmake/jinja_shim)
  target_include_directories(scorch_jinja PRIVATE ${SCORCH_JINJA_DIR})
  target_link_libraries(scorch_jinja PRIVATE nlohmann_json::nlohmann_json)
  target_compile_options(scorch_jinja PRIVATE -w)
  message(STATUS "scorch: Jinja engine from ${SCORCH_JINJA_DIR}")
else()
  message(WARNING "scorch: ${SCORCH_JINJA_DIR} ${_jinja_why} (run tools/setup, then configure again): "
                  "models' own chat templates (tokenizer.chat_template: auto) will be refused")
endif()
