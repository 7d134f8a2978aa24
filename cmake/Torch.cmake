# Finds LibTorch from the pinned pip wheel (torch==2.11.0) and decides whether CUDA kernels build.
# The interpreter: SCORCH_PYTHON, else the venv tools/setup creates, else python3 on PATH.
set(SCORCH_TORCH_VERSION "2.11.0")
if(NOT SCORCH_PYTHON)
  if(DEFINED ENV{SCORCH_PYTHON})
    set(SCORCH_PYTHON "$ENV{SCORCH_PYTHON}")
  elseif(EXISTS "$ENV{HOME}/.cache/scorch/venv/bin/python")
    set(SCORCH_PYTHON "$ENV{HOME}/.cache/scorch/venv/bin/python")
  else()
    find_program(SCORCH_PYTHON python3 REQUIRED)
  endif()
endif()
set(SCORCH_PYTHON "${SCORCH_PYTHON}" CACHE FILEPATH "Python interpreter whose torch wheel provides LibTorch")

execute_process(
  COMMAND "${SCORCH_PYTHON}" -c
    "import torch;print(torch.__version__.split('+')[0]);print(torch.utils.cmake_prefix_path);print(int(torch._C._GLIBCXX_USE_CXX11_ABI));print(torch.version.cuda or '')"
  OUTPUT_VARIABLE _torch_info RESULT_VARIABLE _torch_rc ERROR_VARIABLE _torch_err
  OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT _torch_rc EQUAL 0)
  message(FATAL_ERROR "scorch: ${SCORCH_PYTHON} cannot import torch (${_torch_err}).\n"
                      "Fix: run tools/setup, or pass -DSCORCH_PYTHON=/path/to/python with torch==${SCORCH_TORCH_VERSION}.")
endif()
string(REPLACE "\n" ";" _torch_info "${_torch_info}")
list(GET _torch_info 0 SCORCH_TORCH_FOUND_VERSION)
list(GET _torch_info 1 _torch_prefix)
list(GET _torch_info 2 _torch_abi)
list(LENGTH _torch_info _n)
set(SCORCH_TORCH_CUDA "")
if(_n GREATER 3)
  list(GET _torch_info 3 SCORCH_TORCH_CUDA)
endif()
if(NOT SCORCH_TORCH_FOUND_VERSION VERSION_EQUAL SCORCH_TORCH_VERSION)
  message(FATAL_ERROR "scorch: found torch ${SCORCH_TORCH_FOUND_VERSION} at ${SCORCH_PYTHON}, need ${SCORCH_TORCH_VERSION} "
                      "(the GPU machines run 2.11.0+cu130). Fix: tools/setup installs the pinned wheel.")
endif()
if(NOT _torch_abi EQUAL 1)
  message(FATAL_ERROR "scorch: this torch wheel uses the pre-C++11 ABI; scorch needs _GLIBCXX_USE_CXX11_ABI=1 "
                      "(the standard torch==${SCORCH_TORCH_VERSION} wheel). Fix: reinstall torch from PyPI.")
endif()

# Decide CUDA before find_package(Torch): a CUDA wheel's config looks for the toolkit.
find_program(SCORCH_NVCC nvcc HINTS /usr/local/cuda/bin)
set(SCORCH_WITH_CUDA OFF)
set(SCORCH_CUDA_REASON "")
if(SCORCH_CUDA STREQUAL "OFF")
  set(SCORCH_CUDA_REASON "SCORCH_CUDA=OFF")
elseif(NOT SCORCH_TORCH_CUDA)
  set(SCORCH_CUDA_REASON "torch is a CPU-only build")
elseif(NOT SCORCH_NVCC)
  set(SCORCH_CUDA_REASON "nvcc not found")
else()
  set(SCORCH_WITH_CUDA ON)
  if(NOT CMAKE_CUDA_COMPILER)
    set(CMAKE_CUDA_COMPILER "${SCORCH_NVCC}")
  endif()
endif()
if(SCORCH_CUDA STREQUAL "ON" AND NOT SCORCH_WITH_CUDA)
  message(FATAL_ERROR "scorch: SCORCH_CUDA=ON but ${SCORCH_CUDA_REASON}.")
endif()
# Torch's config overwrites CMAKE_CUDA_ARCHITECTURES: remember what was asked for (default 80;90).
if(DEFINED CMAKE_CUDA_ARCHITECTURES AND NOT CMAKE_CUDA_ARCHITECTURES STREQUAL "" AND NOT CMAKE_CUDA_ARCHITECTURES STREQUAL "OFF")
  set(SCORCH_CUDA_ARCHITECTURES "${CMAKE_CUDA_ARCHITECTURES}" CACHE STRING "CUDA architectures for scorch kernels")
else()
  set(SCORCH_CUDA_ARCHITECTURES "80;90" CACHE STRING "CUDA architectures for scorch kernels")
endif()
# Torch's own CUDA detection wants this for its arch flags; ours are set explicitly above.
if(SCORCH_WITH_CUDA AND NOT DEFINED TORCH_CUDA_ARCH_LIST)
  set(TORCH_CUDA_ARCH_LIST "8.0;9.0")
endif()

list(APPEND CMAKE_PREFIX_PATH "${_torch_prefix}")
find_package(Torch REQUIRED)
set(CMAKE_CUDA_ARCHITECTURES "${SCORCH_CUDA_ARCHITECTURES}")
message(STATUS "scorch: torch ${SCORCH_TORCH_FOUND_VERSION} (CUDA ${SCORCH_TORCH_CUDA}) from ${_torch_prefix}")
# The wheel's own libs directory, so binaries find libtorch*.so at run time.
get_filename_component(SCORCH_TORCH_LIBDIR "${_torch_prefix}/../../lib" ABSOLUTE)
set(CMAKE_BUILD_RPATH "${SCORCH_TORCH_LIBDIR}")
