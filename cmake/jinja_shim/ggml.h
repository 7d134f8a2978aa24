// The one thing llama.cpp's common/json.cpp takes from ggml.h when scorch builds its Jinja engine
// (cmake/Jinja.cmake): an assertion macro. Here a failed assertion throws instead of aborting.
#pragma once
#include <stdexcept>

#define GGML_ASSERT(x)                                                          \
  do {                                                                          \
    if (!(x)) throw std::runtime_error("llama.cpp json assertion failed: " #x); \
  } while (0)
