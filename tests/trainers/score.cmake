# SCoRe trainer tests (issue 10). Included from tests/trainers/CMakeLists.txt.
scorch_add_test(test_score_loss LABEL unit SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_score_loss.cpp LIBS scorch_trainers)
scorch_add_test(test_score_run LABEL integration SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_score_run.cpp LIBS scorch_trainers)
