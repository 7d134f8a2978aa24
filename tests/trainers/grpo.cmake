# GRPO trainer tests (issue 8). Included from tests/trainers/CMakeLists.txt.
scorch_add_test(test_grpo_loss LABEL unit SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_grpo_loss.cpp LIBS scorch_trainers)
scorch_add_test(test_grpo_learning LABEL unit SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_grpo_learning.cpp LIBS scorch_trainers)
scorch_add_test(test_grpo_run LABEL integration SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_grpo_run.cpp LIBS scorch_trainers)
