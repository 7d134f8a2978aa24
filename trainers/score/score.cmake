# SCoRe trainer sources (issue 10). Included from trainers/CMakeLists.txt.
target_sources(scorch_trainers PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/score_rewards.cpp
  ${CMAKE_CURRENT_LIST_DIR}/score_trainer.cpp
)
