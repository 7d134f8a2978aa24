# DPO and ScPO tests (issue 11). Included from tests/trainers/CMakeLists.txt.
scorch_add_test(test_dpo_loss LABEL unit SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_dpo_loss.cpp LIBS scorch_trainers)
scorch_add_test(test_scpo_pairs LABEL unit SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_scpo_pairs.cpp LIBS scorch_trainers)
scorch_add_test(test_dpo_run LABEL integration SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_dpo_run.cpp)
