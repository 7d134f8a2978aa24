# GRPO trainer sources (issue 8). Included from trainers/CMakeLists.txt.
target_sources(scorch_trainers PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/grpo_loss.cpp
  ${CMAKE_CURRENT_LIST_DIR}/grpo_trainer.cpp
)
