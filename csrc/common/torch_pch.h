// Precompiled header for torch-heavy translation units (CMake's target_precompile_headers).
// Never include this directly; it exists so the ~25 s torch/torch.h parse happens once per target.
#pragma once
#include <torch/torch.h>
