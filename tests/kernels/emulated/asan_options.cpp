// AddressSanitizer's defaults for test_kernels_emulated_asan: no leak report (LibTorch's static
// state is never freed) and no fake stacks (the emulator's fibers switch stacks with swapcontext).
extern "C" const char* __asan_default_options() { return "detect_leaks=0:detect_stack_use_after_return=0"; }
